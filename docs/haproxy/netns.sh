#!/bin/sh
# Hosts for the HAProxy recipe (docs/workers.md), as network namespaces on this
# machine: host K is namespace ${PREFIX}K, reached from the root namespace over a
# veth pair, root side ${NET}.K.1/24, host side ${NET}.K.2/24.  Needs root.
#
#   sh netns.sh up   iomh 10.213 3    # iomh1..iomh3 at 10.213.1.2 .. 10.213.3.2
#   sh netns.sh down iomh 3
#
# Nothing leaves the machine: the addresses exist only on these veth pairs.
set -eu
cmd=$1 prefix=$2
case $cmd in
up)
    net=$3 count=$4
    k=1
    while [ "$k" -le "$count" ]; do
        ns=$prefix$k
        ip netns add "$ns"
        ip link add "${prefix}${k}r" type veth peer name "${prefix}${k}h"
        ip link set "${prefix}${k}h" netns "$ns"
        ip addr add "$net.$k.1/24" dev "${prefix}${k}r"
        ip link set "${prefix}${k}r" up
        ip -n "$ns" addr add "$net.$k.2/24" dev "${prefix}${k}h"
        ip -n "$ns" link set "${prefix}${k}h" up
        ip -n "$ns" link set lo up
        # A retiring worker's queued connections move to another worker (Linux 5.14+).
        ip netns exec "$ns" sysctl -qw net.ipv4.tcp_migrate_req=1 2>/dev/null || true
        k=$((k + 1))
    done
    ;;
down)
    count=$3
    k=1
    while [ "$k" -le "$count" ]; do
        ip netns del "$prefix$k" 2>/dev/null || true  # takes its end of the veth pair, and so the pair
        k=$((k + 1))
    done
    ;;
*)
    echo "usage: $0 up PREFIX NET COUNT | down PREFIX COUNT" >&2
    exit 2
    ;;
esac
