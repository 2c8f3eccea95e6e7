# SPDX-License-Identifier: GPL-3.0-or-later
"""Add-on preferences: which Manager, who am I, how to connect."""
from __future__ import annotations

import getpass

import bpy

from ..core.client import Connection
from . import addon


def _default_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (some containers): the user types one
        return ""


class FLAMENCO_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = "flamenco_panel"   # replaced by the real __package__ at register()

    manager_url: bpy.props.StringProperty(
        name="Manager URL", default="http://localhost:8080",
        description="Address of your Flamenco Manager, e.g. http://flamenco.local:8080")
    user_name: bpy.props.StringProperty(
        name="User Name", default=_default_user(),
        description="Written to job metadata as user.name; jobs with this name are yours")
    user_email: bpy.props.StringProperty(name="User Email", default="",
                                         description="Optional; written to job metadata as user.email")
    timeout: bpy.props.FloatProperty(name="Request Timeout", default=10.0, min=1.0, max=300.0, unit='TIME_ABSOLUTE',
                                     description="Seconds to wait for the Manager before giving up")
    verify_tls: bpy.props.BoolProperty(name="Verify TLS Certificates", default=True,
                                       description="Check the HTTPS certificate of the Manager")
    ca_bundle: bpy.props.StringProperty(name="CA Bundle", default="", subtype='FILE_PATH',
                                        description="Optional certificate authority file for a Manager "
                                                    "with its own certificate")
    ignore_proxy: bpy.props.BoolProperty(name="Ignore System Proxy", default=True,
                                         description="Connect directly, so a LAN Manager is not sent through "
                                                     "a corporate proxy")
    header_name: bpy.props.StringProperty(name="Extra Header", default="",
                                          description="Optional HTTP header for a reverse proxy with "
                                                      "authentication, e.g. Authorization")
    header_value: bpy.props.StringProperty(name="Header Value", default="", subtype='PASSWORD',
                                           description="Value of the extra header; never shown or logged")
    refresh_interval: bpy.props.FloatProperty(name="Auto-refresh Interval", default=15.0, min=0.0, max=3600.0,
                                              description="Seconds between automatic refreshes while the "
                                                          "panel is in use (0: never)")
    allow_others: bpy.props.BoolProperty(name="Allow Managing Other Users' Jobs", default=False,
                                         description="Let cancel, pause, requeue and delete act on jobs "
                                                     "submitted by someone else")
    log_max_kb: bpy.props.IntProperty(name="Log Text Limit (KiB)", default=256, min=4, max=16384,
                                      description="Task logs shown in Blender are cut to this size")

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        col = layout.column()
        col.prop(self, "manager_url")
        row = col.row()
        row.operator("flamenco_panel.ping", text="Test Connection", icon='LINKED')
        state = getattr(context.window_manager, "flamenco_panel", None)
        if state is not None and state.connection == 'CONNECTED':
            col.label(text=f"{state.manager_name} {state.manager_version}, farm {state.farm_status}",
                      icon='CHECKMARK')
        elif state is not None and state.message:
            col.label(text=state.message, icon='ERROR')
        col.separator()
        col.prop(self, "user_name")
        col.prop(self, "user_email")
        col.prop(self, "allow_others")
        col.separator()
        col.prop(self, "timeout")
        col.prop(self, "refresh_interval")
        col.prop(self, "log_max_kb")
        col.separator()
        col.prop(self, "verify_tls")
        col.prop(self, "ca_bundle")
        col.prop(self, "ignore_proxy")
        col.prop(self, "header_name")
        col.prop(self, "header_value")
        if not bpy.app.online_access:
            col.label(text="Online access is off: Preferences › System › Allow Online Access", icon='INFO')


def connection(prefs) -> Connection:
    return Connection(
        url=prefs.manager_url, timeout=float(prefs.timeout), connect_timeout=min(5.0, float(prefs.timeout)),
        verify_tls=bool(prefs.verify_tls), ca_bundle=bpy.path.abspath(prefs.ca_bundle) if prefs.ca_bundle else "",
        ignore_proxy=bool(prefs.ignore_proxy), header_name=prefs.header_name, header_value=prefs.header_value)


def get():
    """The preferences of this add-on (None while it is not registered)."""
    entry = bpy.context.preferences.addons.get(addon.package())
    return entry.preferences if entry is not None else None
