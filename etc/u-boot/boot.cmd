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
# U-Boot's hush looks a name up in the env before its local variables, and an
# empty assignment (x= or x="") leaves an existing local unchanged: so every
# local here is redstone_-prefixed and assigned a non-empty value before it is
# read (tests/system/test_boot_script_conformance.py runs the script on real
# U-Boot for every state).

if test -z "${redstone_order}"; then
    echo "redstone: no A/B environment, booting slot A"
    redstone_order="A B"
    redstone_A_ok=1
fi
if test -z "${redstone_save_env}"; then
    setenv redstone_save_env saveenv
fi

redstone_slot=none
redstone_dirty=0
for redstone_s in ${redstone_order}; do
    if test "${redstone_slot}" = "none"; then
        redstone_ok=0
        redstone_tries=0
        if test "${redstone_s}" = "A"; then
            redstone_ok="${redstone_A_ok}"; redstone_tries="${redstone_A_tries}"
        else
            redstone_ok="${redstone_B_ok}"; redstone_tries="${redstone_B_tries}"
        fi
        if test "${redstone_ok}" = "1"; then
            redstone_slot="${redstone_s}"
        elif test -n "${redstone_tries}" && test "${redstone_tries}" -gt 0; then
            if test "${redstone_tries}" = "9"; then redstone_tries=8
            elif test "${redstone_tries}" = "8"; then redstone_tries=7
            elif test "${redstone_tries}" = "7"; then redstone_tries=6
            elif test "${redstone_tries}" = "6"; then redstone_tries=5
            elif test "${redstone_tries}" = "5"; then redstone_tries=4
            elif test "${redstone_tries}" = "4"; then redstone_tries=3
            elif test "${redstone_tries}" = "3"; then redstone_tries=2
            elif test "${redstone_tries}" = "2"; then redstone_tries=1
            else redstone_tries=0
            fi
            setenv redstone_${redstone_s}_tries "${redstone_tries}"
            redstone_dirty=1
            redstone_slot="${redstone_s}"
            echo "redstone: trying slot ${redstone_s}, ${redstone_tries} tries left after this one"
        else
            echo "redstone: skipping slot ${redstone_s} (not committed, no tries left)"
        fi
    fi
done
if test "${redstone_slot}" = "none"; then
    for redstone_s in ${redstone_order}; do
        if test "${redstone_slot}" = "none"; then redstone_slot="${redstone_s}"; fi
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
