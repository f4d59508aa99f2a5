"""The plot of benchmark 2 (bench_progressive.py): the uncompressed backlog over time, per strategy.

Kept apart from the benchmark so the measurement reads on its own; matplotlib is optional
(bench/requirements.txt): without it the benchmark still measures and says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot(runs: dict[str, dict[str, Any]], path: Path, args: Any) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib==3.11.2)")
        return None
    titles = {
        "progressive": f"(a) progressive compression: {args.parallel} loaders (at most "
                       f"{args.parallel if getattr(args, 'max_ahead', None) is None else args.max_ahead} batches ahead of "
                       f"the watermark) + sensor poking every {args.poke_interval:g} s",
        "at_end": f"(b) compress at end: {args.parallel} loaders, then compress every chunk",
    }
    colors = {"progressive": "tab:blue", "at_end": "tab:orange"}
    fig, axes = plt.subplots(2, 1, figsize=(11, 7.5), sharex=True, sharey=True)
    ymax = max(max((s["chunks"] for s in r["timeline"]["samples"]), default=0) for r in runs.values()) or 1
    xmax = max(r["timeline"]["end_t"] for r in runs.values())
    for ax, (name, r) in zip(axes, runs.items()):
        tl = r["timeline"]
        xs = [s["t"] for s in tl["samples"]]
        ys = [s["chunks"] for s in tl["samples"]]
        c = colors[name]
        ax.step(xs, ys, where="post", color=c, lw=1.8)
        ax.fill_between(xs, ys, step="post", color=c, alpha=0.15)
        per = [max(s["per_table"].values()) if s["per_table"] else 0 for s in tl["samples"]]
        ax.step(xs, per, where="post", color=c, lw=1, ls="--", alpha=0.8)
        # Batch completions: a rug of ticks along the bottom.
        bx = [e["t"] for e in tl["batch_done"]]
        ax.plot(bx, [-0.04 * ymax] * len(bx), ls="none", marker="|", ms=10, color="black")
        # Watermark advances: triangles on the top edge, annotated with the batches behind it.
        wx = [e["t"] for e in tl["watermark"] if e["completed"]]
        if wx:
            ax.plot(wx, [ymax * 1.04] * len(wx), ls="none", marker="v", ms=6, color="tab:green")
            if len(wx) <= 24:
                for e in tl["watermark"]:
                    if e["completed"]:
                        ax.annotate(f"{e['completed']}", xy=(e["t"], ymax * 1.04), xytext=(5, -3),
                                    textcoords="offset points", fontsize=7, color="tab:green")
        ax.axvline(tl["last_batch_t"], color="gray", ls=":", lw=1.2)
        ax.axvline(tl["compressed_t"], color="red", ls=":", lw=1.2)
        ax.annotate(
            f"tail {r['tail_seconds']:.1f} s", xy=(tl["compressed_t"], ymax * 0.55),
            xytext=(6, 0), textcoords="offset points", color="red", fontsize=9,
        )
        ax.set_title(
            f"{titles[name]}\nwall {r['wall_seconds']:.1f} s, peak {r['peak_uncompressed_chunks']} chunks "
            f"({r['peak_uncompressed_chunks_per_hypertable']} per hypertable, "
            f"{r['peak_uncompressed_bytes'] / 1048576:.1f} MiB)",
            fontsize=10, loc="left",
        )
        ax.set_ylabel("uncompressed chunks")
        ax.set_ylim(-0.09 * ymax, ymax * 1.12)
        ax.set_xlim(-0.02 * xmax, xmax * 1.08)  # room for the tail label
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel("seconds since the run started")
    from matplotlib.lines import Line2D

    proxies = [
        Line2D([], [], color="dimgray", lw=1.8, label="uncompressed chunks (all hypertables)"),
        Line2D([], [], color="dimgray", lw=1, ls="--", label="max per hypertable"),
        Line2D([], [], color="black", ls="none", marker="|", ms=10, label="batch committed"),
        Line2D([], [], color="tab:green", ls="none", marker="v", ms=6, label="watermark advance (batches behind it)"),
        Line2D([], [], color="gray", ls=":", lw=1.2, label="last batch committed"),
        Line2D([], [], color="red", ls=":", lw=1.2, label="every chunk compressed"),
    ]
    fig.legend(handles=proxies, loc="lower center", ncol=3, fontsize=9, frameon=False)
    first = next(iter(runs.values()))
    fig.suptitle(
        f"Tidemark: uncompressed backlog over time - {first['rows']:,} rows, {first['batches']} batches of "
        f"{args.batch_hours:g} h, {first['chunks']} chunks (6 h), {first['side'].get('database', '')}",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
