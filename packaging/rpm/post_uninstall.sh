# vipcert: make systemd see removed or changed unit files; restarts nothing on upgrade.
# /etc/vipcert/ is the admin's (written by `vipcert init`, never shipped): left in place.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
