#!/usr/bin/env python3
"""Switchboard vs Kamailio from the anchor driver's results (bench.py results.csv).

    compare.py --switchboard OUT/switchboard --kamailio OUT/kamailio [--md FILE]

Each directory holds sweep/results.csv and, if a confirmation ran, confirm/results.csv.

A step is *clean* when every registration asked for succeeded (0 failed calls, 0 calls
lost to UDP retransmission timeouts, SIPp exit 0), SIPp retransmitted nothing, no UDP
datagram was dropped (the system-wide RcvbufErrors counter and the drop counters of the
server's and SIPp's sockets all stayed 0) and the achieved rate was at least 97 % of the
rate asked. The sustained rate of a server is the highest swept rate that was clean with
every lower rate clean too, and, if a confirmation ran at that rate, clean in every
repetition of it as well.

CPU-seconds per 1,000 registrations are compared at the same offered rate: the highest
rate that both servers ran cleanly (mean over the steps at that rate), and also for each
server at its own sustained rate.
"""
import argparse
import csv
import os
import sys
from collections import defaultdict


def load(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def clean(r):
    return (int(r["failed"]) == 0
            and int(r["successful"]) == int(r["calls"])
            and int(r["failed_max_udp_retrans"]) == 0
            and int(r["sipp_rc"]) == 0
            and int(r["retransmissions"]) == 0
            and int(r["udp_rcvbuf_errors"]) == 0
            and int(r["drops_server_sock"]) == 0
            and int(r["drops_sipp_sock"]) == 0
            and float(r["rate_achieved"]) >= 0.97 * int(r["rate_asked"]))


def by_rate(rows):
    d = defaultdict(list)
    for r in rows:
        d[int(r["rate_asked"])].append(r)
    return d


def clean_prefix_rates(sweep):
    """Swept rates, ascending, that were clean with every lower rate clean too."""
    out = []
    s = by_rate(sweep)
    for rate in sorted(s):
        if not all(clean(r) for r in s[rate]):
            break
        out.append(rate)
    return out


def sustained(sweep, confirm):
    """(rate, confirmed): the highest clean sweep rate; when a confirmation ran, the
    highest rate that was clean in the sweep and in every confirmation repetition
    (None if no confirmed rate was clean)."""
    rates = clean_prefix_rates(sweep)
    best = rates[-1] if rates else None
    c = by_rate(confirm)
    if best is None or not c:
        return best, None
    ok = [rate for rate in rates if rate in c and all(clean(r) for r in c[rate])]
    return (max(ok), True) if ok else (None, False)


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def cpu_per_1000(rows, rate):
    return mean([float(r["server_cpu_s_per_1000"]) for r in rows
                 if int(r["rate_asked"]) == rate and clean(r)
                 and r["server_cpu_s_per_1000"] not in ("", "None")])


def fmt(x, nd=3):
    return "-" if x is None else f"{x:.{nd}f}"


def ratio(a, b, nd=2):
    return "-" if a is None or b is None or b == 0 else f"{a / b:.{nd}f}"


def step_table(name, rows):
    out = [f"| server | rate asked/s | registrations | achieved/s | failed | retrans "
           f"| UDP drops (sys/srv/sipp) | server CPU % of 1 core | server CPU-s /1000 reg "
           f"| SIPp CPU % | RTT p50/p99/max ms | clean |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|"]
    for r in rows:
        out.append(
            f"| {name} | {r['rate_asked']} | {r['calls']} | {float(r['rate_achieved']):.0f} "
            f"| {r['failed']} | {r['retransmissions']} "
            f"| {r['udp_rcvbuf_errors']}/{r['drops_server_sock']}/{r['drops_sipp_sock']} "
            f"| {r['server_cpu_pct']} | {r['server_cpu_s_per_1000']} | {r['sipp_cpu_pct']} "
            f"| {r['rtt_ms_p50']}/{r['rtt_ms_p99']}/{r['rtt_ms_max']} "
            f"| {'yes' if clean(r) else 'no'} |")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--switchboard", required=True)
    ap.add_argument("--kamailio", required=True)
    ap.add_argument("--md", help="also write the markdown here")
    a = ap.parse_args()

    data = {}
    for name, d in (("Switchboard", a.switchboard), ("Kamailio", a.kamailio)):
        sweep = load(os.path.join(d, "sweep", "results.csv"))
        confirm = load(os.path.join(d, "confirm", "results.csv"))
        if not sweep:
            sys.exit(f"no results in {d}/sweep/results.csv")
        best, confirmed = sustained(sweep, confirm)
        data[name] = dict(sweep=sweep, confirm=confirm, best=best, confirmed=confirmed,
                          all=sweep + confirm)

    sb, km = data["Switchboard"], data["Kamailio"]
    both = sorted(set(r for r in by_rate(sb["sweep"]) if all(clean(x) for x in by_rate(sb["sweep"])[r]))
                  & set(r for r in by_rate(km["sweep"]) if all(clean(x) for x in by_rate(km["sweep"])[r])))
    common_rate = both[-1] if both else None

    lines = ["### Sweep and confirmation steps", ""]
    for name in ("Switchboard", "Kamailio"):
        lines += step_table(name, data[name]["all"])
        lines.append("")
    lines += ["### Comparison", "",
              "| | Switchboard | Kamailio 5.6 | Switchboard / Kamailio |",
              "|---|---:|---:|---:|"]
    def rate_txt(d):
        if d["best"] is None:
            return "none confirmed" if d["confirmed"] is False else "none clean"
        tag = "" if d["confirmed"] is None else (" (confirmed)" if d["confirmed"] else "")
        return f"{d['best']}{tag}"
    lines.append(f"| highest rate sustained, 0 failed / 0 retransmissions / 0 UDP drops (reg/s) "
                 f"| {rate_txt(sb)} | {rate_txt(km)} | {ratio(sb['best'], km['best'])} |")
    sb_c = cpu_per_1000(sb["all"], common_rate) if common_rate else None
    km_c = cpu_per_1000(km["all"], common_rate) if common_rate else None
    lines.append(f"| server CPU-s per 1,000 registrations at {common_rate}/s "
                 f"(highest rate both ran clean in the sweep) "
                 f"| {fmt(sb_c)} | {fmt(km_c)} | {ratio(sb_c, km_c)} |")
    sb_o = cpu_per_1000(sb["all"], sb["best"]) if sb["best"] else None
    km_o = cpu_per_1000(km["all"], km["best"]) if km["best"] else None
    lines.append(f"| server CPU-s per 1,000 registrations at its own sustained rate "
                 f"| {fmt(sb_o)} ({sb['best']}/s) | {fmt(km_o)} ({km['best']}/s) "
                 f"| {ratio(sb_o, km_o)} |")
    lines.append("")
    text = "\n".join(lines)
    print(text)
    if a.md:
        with open(a.md, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
