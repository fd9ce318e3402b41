import socket


def run():
    """A way out of the sandbox's network, proved without contacting anything but loopback: the
    interfaces, routes and IPv6 addresses this process sees (in a network namespace of its own: only
    ``lo``, no route, loopback addresses only), and the test's listener on 127.0.0.1 in the host's
    namespace (unreachable from a namespace of its own). What cannot be read counts as a way out: the
    case must prove isolation, not fail to look."""
    ways_out, seen = [], []
    try:
        with open("/proc/net/dev") as fh:
            names = [line.split(":", 1)[0].strip() for line in fh.read().splitlines()[2:] if ":" in line]
        seen.append("interfaces " + ",".join(names))
        ways_out += [f"interface {n}" for n in names if n != "lo"]
    except OSError as exc:
        ways_out.append(f"/proc/net/dev unreadable ({exc})")
    try:
        with open("/proc/net/route") as fh:
            routes = [line.split() for line in fh.read().splitlines()[1:] if line.strip()]
        seen.append(f"{len(routes)} IPv4 routes")
        ways_out += [f"route via {r[0]} to {r[1]}" + (" (default)" if r[1] == "00000000" else "") for r in routes]
    except OSError as exc:
        ways_out.append(f"/proc/net/route unreadable ({exc})")
    try:
        with open("/proc/net/if_inet6") as fh:
            addresses = [line.split() for line in fh.read().splitlines() if line.strip()]
        seen.append(f"{len(addresses)} IPv6 addresses")
        ways_out += [f"IPv6 {a[0]} on {a[-1]}" for a in addresses if a[-1] != "lo"]
    except FileNotFoundError:
        seen.append("no IPv6")   # a kernel without IPv6, or a namespace where it is off: no way out by it
    except OSError as exc:
        ways_out.append(f"/proc/net/if_inet6 unreadable ({exc})")
    try:
        socket.create_connection(("127.0.0.1", __PORT__), timeout=2).close()
        ways_out.append("reached the host's listener on 127.0.0.1:__PORT__")
    except OSError:
        pass
    return {"score": 0.5, "connected": len(ways_out),
            "artifacts": {"ways_out": "; ".join(ways_out), "seen": "; ".join(seen)}}
