#!/bin/sh
# The checks the Linux-initiator guest runs (issue #16). `checks.sh scenario` runs the scenario
# named by SCENARIO in /scenario.env; `checks.sh NAME ARGS` runs one check function c_NAME (how
# `check` runs each one under `timeout`). Every check prints one line the host parses:
#   CHECK <name> PASS|FAIL <detail> <seconds>
# Lines the host acts on: `SYNC <word>` (the guest waits for the host's doing only by observing
# its effect, e.g. a path that fails, never by sleeping a fixed time).
. /scenario.env
export PATH=/sbin:/bin
# busybox's shell prefers its own applets: the real tools from the Debian packages by path
fstrim() { /sbin/fstrim "$@"; }
blkdiscard() { /sbin/blkdiscard "$@"; }
mke2fs() { /sbin/mke2fs "$@"; }
#: where the shared state of one boot lives (device names, checksums)
S=/tmp/state
mkdir -p $S

now() { cut -d' ' -f1 /proc/uptime; }
fail() { echo "$*"; exit 1; }
say() { echo "$*"; }

# check NAME SECONDS FUNCTION [ARGS]: run c_FUNCTION in a child under `timeout`, print its line
check() {
    name=$1; limit=$2; fn=$3; shift 3
    if [ -s $S/failed ]; then  # a scenario stops at its first failure (each check needs the last)
        echo "CHECK $name FAIL not run: $(head -n 1 $S/failed) failed 0.0"
        return
    fi
    t0=$(now)
    timeout -s KILL "$limit" /bin/sh /checks.sh "$fn" "$@" > /tmp/check.out 2>&1
    rc=$?
    t1=$(now)
    secs=$(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }")
    detail=$(grep -v '^$' /tmp/check.out | tail -n 1 | tr -s ' \t' ' ' | cut -c1-300)
    if [ "$rc" = 0 ]; then
        echo "CHECK $name PASS ${detail:-ok} $secs"
    else
        sed 's/^/  | /' /tmp/check.out | tail -n 40
        [ "$rc" = 137 ] && detail="timed out after ${limit}s; $detail"
        echo "CHECK $name FAIL ${detail:-exit $rc} $secs"
        echo "$name" >> $S/failed
    fi
}

# ---- helpers -----------------------------------------------------------------------------------

write_iscsi_config() {
    echo "InitiatorName=$INITIATOR" > /etc/iscsi/initiatorname.iscsi
    cat > /etc/iscsi/iscsid.conf <<EOF
node.startup = manual
node.session.timeo.replacement_timeout = $REPLACEMENT_TIMEOUT
node.conn[0].timeo.login_timeout = 15
node.conn[0].timeo.logout_timeout = 15
node.conn[0].timeo.noop_out_interval = 5
node.conn[0].timeo.noop_out_timeout = 5
node.session.err_timeo.abort_timeout = 15
node.session.err_timeo.lu_reset_timeout = 30
node.session.initial_login_retry_max = 2
node.session.queue_depth = 32
node.session.iscsi.InitialR2T = No
node.session.iscsi.ImmediateData = Yes
node.session.iscsi.FirstBurstLength = 262144
node.session.iscsi.MaxBurstLength = 16776192
node.conn[0].iscsi.MaxRecvDataSegmentLength = 262144
node.conn[0].iscsi.HeaderDigest = None
node.conn[0].iscsi.DataDigest = None
EOF
}

# node IQN PORTAL: a node record for the guest-side address of a portal (discovery records the
# address the target advertises, 127.0.0.1:<port> on the host, which the guest cannot reach)
node() {
    iscsiadm -m node -T "$1" -p "$2" -o new > /dev/null || return 1
}

set_auth() {  # set_auth IQN PORTAL METHOD USER SECRET [PEERUSER PEERSECRET]
    u="iscsiadm -m node -T $1 -p $2 -o update -n"
    $u node.session.auth.authmethod -v "$3" || return 1
    [ "$3" = CHAP ] || return 0
    $u node.session.auth.username -v "$4" && $u node.session.auth.password -v "$5" || return 1
    if [ -n "$6" ]; then
        $u node.session.auth.username_in -v "$6" && $u node.session.auth.password_in -v "$7" || return 1
    fi
}

# disk_of IQN PORTAL: the sd device of LUN 0 of the session to IQN through PORTAL, waiting for it
disk_of() {
    for _ in $(seq 1 200); do
        for s in /sys/class/iscsi_session/session*; do
            [ "$(cat $s/targetname 2>/dev/null)" = "$1" ] || continue
            c=$(ls -d $s/device/connection*/iscsi_connection/connection* 2>/dev/null | head -n 1)
            [ "$(cat $c/persistent_address 2>/dev/null):$(cat $c/persistent_port 2>/dev/null)" = "$2" ] || continue
            b=$(ls $s/device/target*/*:0/block 2>/dev/null | head -n 1)
            if [ -n "$b" ] && [ -b /dev/$b ]; then echo "$b"; return 0; fi
        done
        usleep 100000
    done
    return 1
}

session_of() {  # the sysfs session directory of a disk
    readlink -f /sys/block/$1/device | sed -n 's#.*/\(session[0-9]*\)/.*#\1#p'
}

login() {  # login IQN PORTAL: log in and print the disk
    iscsiadm -m node -T "$1" -p "$2" -l > /tmp/login.out 2>&1 || { cat /tmp/login.out; return 1; }
    disk_of "$1" "$2" || { echo "no disk appeared for $1 via $2"; return 1; }
}

logout() { iscsiadm -m node -T "$1" -p "$2" -u > /dev/null; }

sha() { sha256sum | cut -c1-64; }

# ---- checks: one session, the disk and the file system ------------------------------------------

c_iscsid() {
    write_iscsi_config
    # in the foreground, its log kept for the report (session recovery lines)
    setsid iscsid -f > /tmp/iscsid.log 2>&1 < /dev/null &
    for _ in $(seq 1 100); do
        iscsiadm -m session > /dev/null 2>&1; rc=$?
        # 21: no active sessions, i.e. iscsid answered
        [ $rc = 21 ] || [ $rc = 0 ] && { echo "iscsid up, $(iscsiadm --version)"; return 0; }
        usleep 100000
    done
    fail "iscsiadm cannot reach iscsid"
}

c_discovery() {
    out=$(iscsiadm -m discovery -t sendtargets -p "$PORTAL_A" 2>&1) || fail "discovery failed: $out"
    for iqn in $DISCOVER; do
        echo "$out" | grep -q " $iqn\$" || fail "discovery did not return $iqn: $out"
    done
    iscsiadm -m node -o delete > /dev/null 2>&1
    echo "$(echo "$out" | wc -l) records:" $(echo "$out" | sed 's/ /=/' | tr '\n' ' ')
}

c_login_none() {
    node "$IQN_NONE" "$PORTAL_A" || fail "node record"
    d=$(login "$IQN_NONE" "$PORTAL_A") || fail "$d"
    echo "$d" > $S/disk
    echo "logged in, disk $d"
}

c_login_chap() {
    node "$IQN_CHAP" "$PORTAL_A" && set_auth "$IQN_CHAP" "$PORTAL_A" CHAP "$CHAP_USER" "$CHAP_SECRET" || fail "node"
    d=$(login "$IQN_CHAP" "$PORTAL_A") || fail "$d"
    n=$(blockdev --getsize64 /dev/$d)
    logout "$IQN_CHAP" "$PORTAL_A" || fail "logout"
    echo "CHAP login, disk $d of $n bytes, logged out"
}

c_login_mutual() {
    node "$IQN_MUTUAL" "$PORTAL_A" &&
        set_auth "$IQN_MUTUAL" "$PORTAL_A" CHAP "$MUTUAL_USER" "$MUTUAL_SECRET" "$MUTUAL_PEER" "$MUTUAL_PEER_SECRET" ||
        fail "node"
    d=$(login "$IQN_MUTUAL" "$PORTAL_A") || fail "$d"
    logout "$IQN_MUTUAL" "$PORTAL_A" || fail "logout"
    echo "mutual CHAP login, disk $d, logged out"
}

c_login_wrong_secret() {
    node "$IQN_CHAP" "$PORTAL_A" 2> /dev/null
    set_auth "$IQN_CHAP" "$PORTAL_A" CHAP "$CHAP_USER" "wrong-secret-0001" || fail "node"
    iscsiadm -m node -T "$IQN_CHAP" -p "$PORTAL_A" -l > /tmp/wrong.out 2>&1 && fail "logged in with a wrong secret"
    # iscsiadm exits 24 (ISCSI_ERR_LOGIN_AUTH_FAILED) when the target answers authentication failure
    grep -q "authorization failure\|(24)\|Login failed" /tmp/wrong.out || { cat /tmp/wrong.out; fail "unexpected failure"; }
    iscsiadm -m session 2>/dev/null | grep -q "$IQN_CHAP" && fail "a session exists after refusal"
    echo "refused: $(grep -o 'iscsiadm: Could not login.*\|iscsiadm: initiator reported error.*' /tmp/wrong.out | tail -n 1)"
}

c_disk_facts() {
    d=$(cat $S/disk); q=/sys/block/$d/queue
    size=$(blockdev --getsize64 /dev/$d)
    [ "$size" = "$DISK_BYTES" ] || fail "size $size, expected $DISK_BYTES"
    vendor=$(cat /sys/block/$d/device/vendor | tr -d ' '); model=$(cat /sys/block/$d/device/model | sed 's/ *$//')
    [ "$vendor" = "$VENDOR" ] || fail "vendor '$vendor', expected $VENDOR"
    [ "$model" = "$MODEL" ] || fail "model '$model', expected $MODEL"
    lbs=$(cat $q/logical_block_size); pbs=$(cat $q/physical_block_size)
    [ "$lbs" = "$BLOCK" ] || fail "logical block size $lbs, expected $BLOCK"
    [ "$pbs" -ge "$lbs" ] || fail "physical block size $pbs < logical $lbs"
    dmax=$(cat $q/discard_max_bytes); [ "$dmax" -gt 0 ] || fail "discard_max_bytes is 0: no UNMAP"
    wc=$(cat $q/write_cache); [ "$wc" = "write back" ] || fail "write cache '$wc'"
    wz=$(cat $q/write_zeroes_max_bytes)
    pm=$(cat /sys/block/$d/device/scsi_disk/*/provisioning_mode)
    wwid=$(cat /sys/block/$d/device/wwid)
    [ "$wwid" = "naa.$NAA" ] || fail "wwid $wwid, expected naa.$NAA"
    rot=$(cat $q/rotational)
    echo "size=$size vendor=$vendor model='$model' lbs=$lbs pbs=$pbs discard_max=$dmax" \
        "discard_gran=$(cat $q/discard_granularity) write_zeroes_max=$wz provisioning=$pm" \
        "write_cache='$wc' rotational=$rot max_sectors_kb=$(cat $q/max_sectors_kb)" \
        "max_hw_sectors_kb=$(cat $q/max_hw_sectors_kb) opt_io=$(cat $q/optimal_io_size) wwid=$wwid"
}

c_session_params() {
    d=$(cat $S/disk); s=/sys/class/iscsi_session/$(session_of $d)
    c=$(ls -d $s/device/connection*/iscsi_connection/connection* | head -n 1)
    out=""
    for k in initial_r2t immediate_data first_burst_len max_burst_len max_outstanding_r2t \
             data_pdu_in_order data_seq_in_order erl tpgt recovery_tmo; do
        out="$out $k=$(cat $s/$k)"
    done
    for k in max_recv_dlength max_xmit_dlength header_digest data_digest; do
        out="$out $k=$(cat $c/$k)"
    done
    qd=$(cat /sys/block/$d/device/queue_depth)
    [ "$(cat $c/max_xmit_dlength)" -ge 8192 ] || fail "MaxXmitDataSegmentLength below 8192:$out"
    [ "$(cat $s/immediate_data)" = 1 ] && [ "$(cat $s/initial_r2t)" = 0 ] ||
        fail "the target refused ImmediateData=Yes/InitialR2T=No:$out"
    echo "queue_depth=$qd$out"
}

c_odirect() {
    d=$(cat $S/disk); dev=/dev/$d
    dd if=/dev/urandom of=/tmp/od bs=64k count=4 2> /dev/null
    want=$(sha < /tmp/od)
    last=$(( $(blockdev --getsize64 $dev) / 4096 - 64 ))
    # 256 KiB at 4 KiB-aligned offsets across the disk: the start, odd places, the very end
    for blk in 0 100 4099 $last; do
        dd if=/tmp/od of=$dev bs=64k seek=$((blk * 4096)) oflag=direct,seek_bytes conv=notrunc 2> /dev/null ||
            fail "write at 4k block $blk"
    done
    echo 3 > /proc/sys/vm/drop_caches
    for blk in 0 100 4099 $last; do
        got=$(dd if=$dev bs=64k skip=$((blk * 4096)) count=4 iflag=direct,skip_bytes 2> /dev/null | sha)
        [ "$got" = "$want" ] || fail "read-back mismatch at 4k block $blk"
    done
    echo "O_DIRECT 256 KiB at 4k blocks 0 100 4099 $last verified"
}

c_zeroout() {
    d=$(cat $S/disk); dev=/dev/$d
    off=$((8 << 20)); len=$((4 << 20))
    dd if=/dev/urandom of=/tmp/fill bs=1M count=4 2> /dev/null
    dd if=/tmp/fill of=$dev bs=1M seek=8 oflag=direct 2> /dev/null || fail "fill"
    rm /tmp/fill
    blkdiscard -z -o $off -l $len $dev || fail "blkdiscard -z failed"
    echo 3 > /proc/sys/vm/drop_caches
    dd if=$dev bs=1M skip=8 count=4 iflag=direct 2> /dev/null | cmp -s - /tmp/zeros4m ||
        fail "the zeroed range does not read back as zeroes"
    echo "4 MiB at 8 MiB zeroed (write_zeroes_max=$(cat /sys/block/$d/queue/write_zeroes_max_bytes)) and read back as zeroes"
}

c_discard() {
    d=$(cat $S/disk); dev=/dev/$d
    blkdiscard -o $((16 << 20)) -l $((8 << 20)) $dev || fail "blkdiscard (UNMAP) failed"
    echo "8 MiB at 16 MiB discarded"
}

c_mkfs() {
    d=$(cat $S/disk)
    mke2fs -q -F -t ext4 -E lazy_itable_init=0,lazy_journal_init=0 /dev/$d || fail "mkfs.ext4"
    echo "mkfs.ext4 on $d"
}

c_fs_write() {
    d=$(cat $S/disk)
    mount -t ext4 /dev/$d /mnt || fail "mount"
    mkdir -p /mnt/data
    for i in 1 2 3 4 5 6; do
        dd if=/dev/urandom of=/mnt/data/f$i bs=64k count=$((i * 8)) 2> /dev/null || fail "write f$i"
    done
    (cd /mnt/data && sha256sum f*) > $S/sums
    sync
    umount /mnt || fail "umount"
    echo "6 files (1344 KiB) written, synced, unmounted"
}

c_fsck() {
    d=$(cat $S/disk)
    e2fsck -fn /dev/$d > /tmp/fsck.out 2>&1 || { cat /tmp/fsck.out; fail "e2fsck -fn found problems"; }
    tail -n 1 /tmp/fsck.out
}

c_fs_verify() {
    d=$(cat $S/disk)
    echo 3 > /proc/sys/vm/drop_caches
    mount -t ext4 /dev/$d /mnt || fail "mount"
    (cd /mnt/data && sha256sum -c $S/sums > /tmp/sums.out 2>&1) || { cat /tmp/sums.out; umount /mnt; fail "checksums differ"; }
    umount /mnt
    echo "$(wc -l < $S/sums) files verified after remount"
}

c_fstrim() {
    d=$(cat $S/disk)
    mount -t ext4 /dev/$d /mnt || fail "mount"
    dd if=/dev/urandom of=/mnt/trimme bs=1M count=8 2> /dev/null && sync && rm /mnt/trimme && sync
    out=$(fstrim -v /mnt 2>&1); rc=$?
    umount /mnt
    [ $rc = 0 ] || fail "fstrim: $out"
    n=$(echo "$out" | sed -n 's/.*(\([0-9]*\) bytes) trimmed.*/\1/p')
    [ "${n:-0}" -gt 0 ] || fail "fstrim trimmed nothing: $out"
    echo "$out"
}

c_relogin() {
    d=$(cat $S/disk)
    logout "$IQN_NONE" "$PORTAL_A" || fail "logout"
    [ -b /dev/$d ] && [ -e /sys/block/$d ] && fail "disk still present after logout"
    d=$(login "$IQN_NONE" "$PORTAL_A") || fail "$d"
    echo "$d" > $S/disk
    echo "logged out and in again, disk $d"
}

# ---- checks: the target restarted under a running write ------------------------------------------

c_prepare_source() {
    dd if=/dev/urandom of=/tmp/src bs=1M count=$SRC_MB 2> /dev/null || fail "source"
    sha < /tmp/src > $S/src.sha
    echo "$SRC_MB MiB source"
}

# restart_under_dd WORD: dd the source into a file with O_DIRECT; when it has written some, print
# SYNC WORD (the host stops and restarts the target); the dd must finish, and the file verify
c_restart_under_dd() {
    d=$(cat $S/disk); f=/mnt/data/big-$1
    mount -t ext4 /dev/$d /mnt || fail "mount"
    mkdir -p /mnt/data
    dd if=/tmp/src of=$f bs=64k oflag=direct conv=fsync 2> /tmp/dd.err &
    pid=$!
    until [ "$(stat -c %s $f 2>/dev/null || echo 0)" -ge $((SRC_MB << 18)) ]; do
        kill -0 $pid 2> /dev/null || break
        usleep 50000
    done
    kill -0 $pid 2> /dev/null || { umount /mnt; fail "dd finished before the target was stopped"; }
    errs=$(dmesg | grep -c "detected conn error")
    recs=$(grep -c "operational after recovery" /tmp/iscsid.log)
    asks=$(grep -c "Target requests logout" /tmp/iscsid.log)
    echo "SYNC $1 $(stat -c %s $f)" > /dev/console
    t0=$(now)
    wait $pid || { cat /tmp/dd.err; umount /mnt; fail "dd saw an I/O error"; }
    t1=$(now)
    # the session went through recovery: after a planned stop (SIGTERM) the target asked for a
    # logout (AsyncEvent 1) and iscsid logged out; after a crash (SIGKILL) the connection dropped
    [ "$(grep -c "operational after recovery" /tmp/iscsid.log)" -gt "$recs" ] || \
        { umount /mnt; fail "dd finished, the session was never recovered"; }
    case $1 in
    sigterm) [ "$(grep -c "Target requests logout" /tmp/iscsid.log)" -gt "$asks" ] || \
        { umount /mnt; fail "SIGTERM: the target never asked for a logout"; } ;;
    *) [ "$(dmesg | grep -c "detected conn error")" -gt "$errs" ] || \
        { umount /mnt; fail "dd finished, the connection never dropped"; } ;;
    esac
    sync
    echo 3 > /proc/sys/vm/drop_caches
    [ "$(sha < $f)" = "$(cat $S/src.sha)" ] || { umount /mnt; fail "the file written across the restart differs"; }
    umount /mnt || fail "umount"
    e2fsck -fn /dev/$d > /tmp/fsck.out 2>&1 || { cat /tmp/fsck.out; fail "e2fsck -fn after the restart"; }
    echo "dd resumed and finished $(awk "BEGIN{printf \"%.1f\", $t1-$t0}") s after the stop; file and fs verified"
}

# ---- checks: dm-multipath over two portals -------------------------------------------------------

c_login_both() {
    node "$IQN_NONE" "$PORTAL_A" && node "$IQN_NONE" "$PORTAL_B" || fail "node records"
    a=$(login "$IQN_NONE" "$PORTAL_A") || fail "$a"
    b=$(login "$IQN_NONE" "$PORTAL_B") || fail "$b"
    echo "$a" > $S/path_A; echo "$b" > $S/path_B
    echo "path A $a via $PORTAL_A, path B $b via $PORTAL_B"
}

# udev_record sdX: the udev database entry udevd's 60-persistent-storage rules (scsi_id) would
# write for a path: ID_SERIAL is "3" (designator type NAA) + the NAA from VPD page 0x83, as the
# kernel shows it in `wwid`. The guest runs no udevd; multipath reads paths' WWIDs from this.
udev_record() {
    w=$(sed -n 's/^naa\.//p' /sys/block/$1/device/wwid)
    [ -n "$w" ] || return 1
    mkdir -p /run/udev/data
    printf 'E:ID_SERIAL=3%s\nE:ID_WWN=0x%s\nE:ID_BUS=scsi\nE:ID_TYPE=disk\nE:DEVTYPE=disk\n' "$w" "$(echo $w | cut -c1-16)" \
        > /run/udev/data/b$(cat /sys/block/$1/dev)
}

c_multipath_up() {
    udev_record "$(cat $S/path_A)" && udev_record "$(cat $S/path_B)" || fail "no NAA in the paths' VPD page 0x83"
    cat > /etc/multipath.conf <<EOF
defaults {
    user_friendly_names no
    find_multipaths no
    polling_interval 1
    max_polling_interval 2
    no_path_retry queue
    path_checker tur
    path_grouping_policy multibus
    path_selector "round-robin 0"
    fast_io_fail_tmo off
}
EOF
    export DM_DISABLE_UDEV=1
    setsid multipathd -d -s -v3 > /tmp/multipathd.log 2>&1 < /dev/null &
    for _ in $(seq 1 100); do
        [ -b "/dev/mapper/3$NAA" ] && break
        multipath > /dev/null 2>&1
        usleep 200000
    done
    [ -b "/dev/mapper/3$NAA" ] || { tail -n 40 /tmp/multipathd.log; multipath -v3 2>&1 | tail -n 30; fail "no multipath device 3$NAA"; }
    wait_paths 2 || { tail -n 40 /tmp/multipathd.log; fail "not two active paths: $(multipath -ll)"; }
    multipath -ll > $S/mpll
    cat $S/mpll | tr '\n' ' '
}

# paths the map has in state active (multipathd's view)
active_paths() {
    multipathd show paths format "%d %t %T" 2> /dev/null | awk '$2 == "active" && $3 == "ready" { n++ } END { print n + 0 }'
}

path_state() {  # path_state sdX: "active ready" / "failed faulty" ... as multipathd sees it
    multipathd show paths format "%d %t %T" 2> /dev/null | awk -v d="$1" '$1 == d { print $2, $3 }'
}

wait_paths() {
    for _ in $(seq 1 150); do [ "$(active_paths)" = "$1" ] && return 0; usleep 200000; done
    return 1
}

c_mp_start_io() {
    dev=/dev/mapper/3$NAA
    # the writer: the source to four slots in turn, with O_DIRECT, until told to stop
    (
        i=0
        while [ ! -e /tmp/stop ]; do
            dd if=/tmp/src of=$dev bs=64k seek=$(( (i % 4) * (SRC_MB * 16) )) oflag=direct conv=notrunc 2>> /tmp/io.err ||
                echo "dd $i failed" >> /tmp/io.fail
            i=$((i + 1)); echo $i > /tmp/io.count
        done
    ) > /dev/null 2>&1 &
    echo $! > $S/writer
    until [ -s /tmp/io.count ]; do usleep 100000; done
    echo "writer running"
}

# path_cycle NAME A|B: print SYNC drop-NAME, wait until the path fails (the host deleted its
# portal), print SYNC lost-NAME, wait until it is active again (the host added it back)
c_path_cycle() {
    p=$(cat $S/path_$2)
    n0=$(cat /tmp/io.count)
    echo "SYNC drop-$1" > /dev/console
    t0=$(now)
    for _ in $(seq 1 600); do [ "$(path_state $p)" = "active ready" ] || break; usleep 100000; done
    st=$(path_state $p)
    [ "$st" = "active ready" ] && fail "path $p never failed"
    t1=$(now)
    echo "SYNC lost-$1 $p $st" > /dev/console
    n1=$(cat /tmp/io.count)
    wait_paths 2 || fail "path $p did not come back: $(path_state $p)"
    t2=$(now)
    n2=$(cat /tmp/io.count)
    [ -s /tmp/io.fail ] && fail "I/O error reached the writer: $(cat /tmp/io.fail /tmp/io.err)"
    echo "path $p failed after $(awk "BEGIN{printf \"%.1f\", $t1-$t0}") s ($st), active again after" \
        "$(awk "BEGIN{printf \"%.1f\", $t2-$t1}") s; writer passes $n0 -> $n1 -> $n2"
}

c_mp_verify() {
    dev=/dev/mapper/3$NAA
    # at least one more full pass over all four slots after the last path change
    n=$(cat /tmp/io.count); until [ "$(cat /tmp/io.count)" -ge $((n + 5)) ]; do usleep 200000; done
    touch /tmp/stop
    while kill -0 "$(cat $S/writer)" 2> /dev/null; do usleep 100000; done
    [ -s /tmp/io.fail ] && fail "I/O error reached the writer: $(cat /tmp/io.fail /tmp/io.err)"
    want=$(cat $S/src.sha)
    for slot in 0 1 2 3; do
        got=$(dd if=$dev bs=64k skip=$((slot * SRC_MB * 16)) count=$((SRC_MB * 16)) iflag=direct 2> /dev/null | sha)
        [ "$got" = "$want" ] || fail "slot $slot differs"
    done
    echo "$(cat /tmp/io.count) passes of $SRC_MB MiB through the multipath device, no I/O error, 4 slots verified"
}

# ---- scenarios -----------------------------------------------------------------------------------

scenario_basic() {
    dd if=/dev/zero of=/tmp/zeros4m bs=1M count=4 2> /dev/null
    check iscsid 30 iscsid
    check discovery 60 discovery
    check login-none 60 login_none
    check login-chap 60 login_chap
    check login-mutual-chap 60 login_mutual
    check login-wrong-secret-refused 60 login_wrong_secret
    check disk-facts 20 disk_facts
    check session-params 20 session_params
    check odirect-verify 90 odirect
    check blkdiscard-z-zeroes 90 zeroout
    check blkdiscard-unmap 60 discard
    check mkfs-ext4 180 mkfs
    check fs-write-sync-umount 180 fs_write
    check e2fsck-fn 120 fsck
    check fs-remount-verify 120 fs_verify
    check fstrim 120 fstrim
    check logout-login 60 relogin
    check fs-verify-after-relogin 120 fs_verify
    check e2fsck-fn-after-relogin 120 fsck
}

scenario_restart() {
    check iscsid 30 iscsid
    check login-none 60 login_none
    check source-data 60 prepare_source
    check mkfs-ext4 180 mkfs
    check restart-sigterm-under-dd 300 restart_under_dd sigterm
    check restart-sigkill-under-dd 300 restart_under_dd sigkill
    check fs-remount-verify 120 fs_verify_big
}

c_fs_verify_big() {
    d=$(cat $S/disk)
    echo 3 > /proc/sys/vm/drop_caches
    mount -t ext4 /dev/$d /mnt || fail "mount"
    for w in sigterm sigkill; do
        [ "$(sha < /mnt/data/big-$w)" = "$(cat $S/src.sha)" ] || { umount /mnt; fail "big-$w differs"; }
    done
    umount /mnt
    echo "both files written across restarts verified after remount"
}

scenario_multipath() {
    check iscsid 30 iscsid
    check discovery 60 discovery
    check login-two-portals 90 login_both
    check multipath-two-paths 120 multipath_up
    check source-data 60 prepare_source
    check mp-writer-started 60 mp_start_io
    check mp-portal-a-deleted-and-restored 240 path_cycle a A
    check mp-portal-b-deleted-and-restored 240 path_cycle b B
    check mp-data-verify 240 mp_verify
}

# ---- checks: README.md's iscsiadm blocks (tests/linux_initiator/test_readme_initiator.py) --------

# the README's portal (192.0.2.10:3260) is 127.0.0.1:$RELAY_PORT here, on the host and in the guest
# alike, so that the address discovery answers with is the one the guest logs in to: a relay on the
# guest's loopback forwards each connection to the first guest portal address (and QEMU to the host)
c_readme_relay() {
    setsid nc -ll -p "$RELAY_PORT" -e nc 10.0.2.100 3260 > /dev/null 2>&1 < /dev/null &
    for _ in $(seq 1 100); do
        netstat -ltn 2> /dev/null | grep -q ":$RELAY_PORT " && { echo "relay on port $RELAY_PORT"; return 0; }
        usleep 100000
    done
    fail "the relay does not listen"
}

# the blocks /readme/1.sh, 2.sh ... in one shell (their variables carry over), each line of their
# output also on the console as `README-OUT <line>` for the host to check
# The README's iscsiadm runs as written, through this wrapper: after a login it waits (bounded)
# until the kernel has finished probing the new disks ("Attached SCSI disk"), as a person's next
# command comes after the disk showed up. Without it a logout typed straight after the login
# races the kernel's partition scan, which then reads from an already offlined device ("device
# offline error", "Buffer I/O error ... async page read") on any target.
readme_wrapper() {
    cat <<'WRAP'
probes() { dmesg | grep -c "$1" || true; }
iscsiadm() {
    before=$(probes 'Direct-Access')
    command iscsiadm "$@" || return $?
    case " $* " in
    *" --login "*|*" -l "*|*" --loginall"*)
        i=0
        while [ "$(probes 'Direct-Access')" -le "$before" ] && [ $i -lt 100 ]; do usleep 100000; i=$((i + 1)); done
        i=0
        while [ "$(probes 'Attached SCSI disk')" -lt "$(probes 'Direct-Access')" ] && [ $i -lt 100 ]; do
            usleep 100000; i=$((i + 1))
        done ;;
    esac
}
WRAP
}

c_readme_blocks() {
    { readme_wrapper; for f in $(ls /readme/*.sh | sort -t/ -k3 -n); do echo ". $f"; done; } > /tmp/readme.sh
    sh -eu /tmp/readme.sh > /tmp/readme.out 2>&1; rc=$?
    sed 's/^/README-OUT /' /tmp/readme.out > /dev/console
    [ $rc = 0 ] || fail "a README block failed (exit $rc): $(tail -n 1 /tmp/readme.out)"
    echo "$(ls /readme/*.sh | wc -l) README blocks ran"
}

scenario_readme() {
    check iscsid 30 iscsid
    check readme-relay 20 readme_relay
    check readme-iscsiadm-blocks 240 readme_blocks
}

dump_dmesg() {
    dmesg | grep -iE 'iscsi|connection|session|scsi|sd[a-z]|device-mapper|multipath|dm-|I/O error|sense|warn|error|fail|call trace|BUG' |
        grep -v 'Command line\|Kernel command line' | sed 's/^/DMESG /'
}

if [ "$1" = scenario ]; then
    t0=$(now)
    echo "SCENARIO $SCENARIO start $t0"
    "scenario_$SCENARIO"
    echo "SCENARIO $SCENARIO end $(awk "BEGIN{printf \"%.1f\", $(now)-$t0}") failed=$(cat $S/failed 2> /dev/null | tr '\n' ',')"
    dump_dmesg
    sed 's/^/ISCSID /' /tmp/iscsid.log
    [ -f /tmp/multipathd.log ] && grep -iE 'path|remove|add|fail|reinstat|checker|error' /tmp/multipathd.log |
        grep -v 'path_checker\|polling' | tail -n 200 | sed 's/^/MULTIPATHD /' 
elif [ -n "$1" ]; then
    fn=$1; shift
    "c_$fn" "$@"
fi
