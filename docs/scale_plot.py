#!/usr/bin/env python3
"""Draws docs/scale.svg from docs/scale.csv (the curve in docs/scaling.md): training time
per stage and peak memory against users, on log-log axes. Standard library only.

Run: python3 docs/scale_plot.py
"""
import csv
import math
import os

HERE = os.path.dirname(os.path.abspath(__file__))
STAGES = [("read", "#4e79a7"), ("matrix", "#f28e2b"), ("smooth", "#e15759"),
          ("index", "#76b7b2"), ("total", "#222222")]
W, H, L, R, T, B = 760, 420, 70, 190, 30, 50


def main():
    with open(os.path.join(HERE, "scale.csv")) as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    users = [float(r["users"]) for r in rows]
    ys = [float(r[s]) for r in rows for s, _ in STAGES if r[s]]
    x0, x1 = math.log10(min(users)) - 0.1, math.log10(max(users) * 100) + 0.1
    y0, y1 = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys) * 100))

    def px(u):
        return L + (math.log10(u) - x0) / (x1 - x0) * (W - L - R)

    def py(s):
        return T + (1 - (math.log10(s) - y0) / (y1 - y0)) * (H - T - B)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>']
    for e in range(y0, y1 + 1):
        y = py(10 ** e)
        out.append(f'<line x1="{L}" x2="{W - R}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        label = f"{10 ** e:g} s" if e < 4 else f"1e{e} s"
        out.append(f'<text x="{L - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    for u in [1e4, 1e5, 1e6, 1e7, 1e8]:
        if x0 <= math.log10(u) <= x1:
            x = px(u)
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{T}" y2="{H - B}" stroke="#ddd"/>')
            label = {1e4: "10k", 1e5: "100k", 1e6: "1M", 1e7: "10M", 1e8: "100M"}[u]
            out.append(f'<text x="{x:.1f}" y="{H - B + 16}" text-anchor="middle">{label}</text>')
    out.append(f'<text x="{(L + W - R) / 2:.0f}" y="{H - 10}" text-anchor="middle">'
               'users (log scale); dashed: projected from the slope of the last two measured points</text>')
    goal = py(600)
    out.append(f'<line x1="{L}" x2="{W - R}" y1="{goal:.1f}" y2="{goal:.1f}" '
               'stroke="#e15759" stroke-dasharray="2,3"/>')
    out.append(f'<text x="{L + 4}" y="{goal - 4:.1f}" fill="#e15759">10 min goal at 1M</text>')
    for i, (stage, colour) in enumerate(STAGES):
        pts = [(float(r["users"]), float(r[stage])) for r in rows if r[stage]]
        path = " ".join(f"{px(u):.1f},{py(s):.1f}" for u, s in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for u, s in pts:
            out.append(f'<circle cx="{px(u):.1f}" cy="{py(s):.1f}" r="3" fill="{colour}"/>')
        # Projection: the slope between the last two measured points, to 100M users.
        (ua, sa), (ub, sb) = pts[-2], pts[-1]
        slope = math.log10(sb / sa) / math.log10(ub / ua)
        far = [(u, sb * (u / ub) ** slope) for u in (1e7, 1e8)]
        proj = " ".join(f"{px(u):.1f},{py(s):.1f}" for u, s in [(ub, sb)] + far)
        out.append(f'<polyline points="{proj}" fill="none" stroke="{colour}" '
                   'stroke-width="1.5" stroke-dasharray="5,4"/>')
        ly = T + 14 + i * 18
        out.append(f'<line x1="{W - R + 14}" x2="{W - R + 34}" y1="{ly - 4}" y2="{ly - 4}" '
                   f'stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{W - R + 40}" y="{ly}">{stage} (slope {slope:.2f})</text>')
    out.append("</svg>")
    with open(os.path.join(HERE, "scale.svg"), "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
