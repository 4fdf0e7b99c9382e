# vipcert: on final removal ($1 = 0; not on upgrade), stop and disable the units.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now vipcert-serve.service vipcert-balance.service \
        vipcert-renew.timer vipcert-renew.service >/dev/null 2>&1 || :
fi
