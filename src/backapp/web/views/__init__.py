"""The pages' routers, one module per area (in the order their URLs must be matched)."""

from backapp.web.views import (
    alerts,
    auth,
    configs,
    dashboard,
    notifications,
    restores,
    runs,
    tools,
)

# Fixed paths (/backups/new, /backups/logs, …) before /backups/{config_id}.
ROUTERS = [
    auth.router,
    dashboard.router,
    tools.router,
    runs.router,
    alerts.router,
    notifications.router,
    restores.router,
    configs.router,
]

__all__ = ["ROUTERS"]
