# vipcert: make systemd see new or changed unit files. Never enables, starts or restarts a
# unit, on install or upgrade: the admin does that after `vipcert init`.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
