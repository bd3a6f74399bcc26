# Redstone OTA A/B boot script for U-Boot (docs/boot.md, "U-Boot").
# Compile: mkimage -A arm -T script -C none -n "Redstone A/B" -d boot.cmd boot.scr
#
# Implements redstone_agent.slots.scheme.BootState.choose():
#   the first slot in redstone_order that is committed (redstone_<S>_ok=1) boots
#   as is; an uncommitted one with redstone_<S>_tries > 0 boots after its counter
#   is decremented and saved (so a crash counts as a try); spent slots are
#   skipped; if nothing is bootable the primary is tried anyway.
#
# Board integration (set in the board's default environment):
#   redstone_boot_A / redstone_boot_B  load and start the kernel of that slot;
#                                      ${bootargs} already carries redstone.slot=
#   redstone_bootargs                  base kernel command line
#   redstone_save_env                  persist the env (default: saveenv; boards
#                                      without saveenv use env export + a write)
# Only hush features present in minimal builds are used: no setexpr, no
# bootcount; the counter is decremented with an if/elif chain.

if test -z "${redstone_order}"; then
    echo "redstone: no A/B environment, booting slot A"
    redstone_order="A B"
    redstone_A_ok=1
fi
if test -z "${redstone_save_env}"; then
    setenv redstone_save_env saveenv
fi

redstone_slot=
redstone_dirty=0
for s in ${redstone_order}; do
    if test -z "${redstone_slot}"; then
        if test "${s}" = "A"; then
            ok="${redstone_A_ok}"; tries="${redstone_A_tries}"
        else
            ok="${redstone_B_ok}"; tries="${redstone_B_tries}"
        fi
        if test "${ok}" = "1"; then
            redstone_slot="${s}"
        elif test -n "${tries}" && test "${tries}" -gt 0; then
            if test "${tries}" = "9"; then tries=8
            elif test "${tries}" = "8"; then tries=7
            elif test "${tries}" = "7"; then tries=6
            elif test "${tries}" = "6"; then tries=5
            elif test "${tries}" = "5"; then tries=4
            elif test "${tries}" = "4"; then tries=3
            elif test "${tries}" = "3"; then tries=2
            elif test "${tries}" = "2"; then tries=1
            else tries=0
            fi
            setenv redstone_${s}_tries "${tries}"
            redstone_dirty=1
            redstone_slot="${s}"
            echo "redstone: trying slot ${s}, ${tries} tries left after this one"
        else
            echo "redstone: skipping slot ${s} (not committed, no tries left)"
        fi
    fi
done
if test -z "${redstone_slot}"; then
    for s in ${redstone_order}; do
        if test -z "${redstone_slot}"; then redstone_slot="${s}"; fi
    done
    echo "redstone: no bootable slot, trying primary ${redstone_slot}"
fi
if test "${redstone_dirty}" = "1"; then
    run redstone_save_env
fi

echo "redstone: booting slot ${redstone_slot}"
setenv bootargs "${redstone_bootargs} redstone.slot=${redstone_slot}"
run redstone_boot_${redstone_slot}
echo "redstone: slot ${redstone_slot} failed to start; resetting"
reset
