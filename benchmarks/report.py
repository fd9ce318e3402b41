"""The results as a Markdown table (printed, and pasted into the README's Performance section)."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["render_table"]


def _num(value: Any, fmt: str = ".1f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return format(value, fmt)


def _pct(value: Any) -> str:
    return "—" if value is None else f"{100 * value:.0f} %"


def _ratio(value: Any) -> str:
    return "—" if value is None else f"{value:.2f}×"


def _why(section: dict) -> str | None:
    return section.get("unavailable") or section.get("error")


def render_table(results: dict) -> str:
    rows: list[tuple[str, str, str, str]] = []   # benchmark, measured, reference, ratio
    env = results.get("environment", {})

    tp = results.get("throughput")
    if tp is not None:
        if _why(tp):
            rows.append(("1 pipeline throughput", f"unavailable: {_why(tp)}", "", ""))
        else:
            for run in tp["runs"]:
                cap = run["capacity"]
                rows.append((f"1 pipeline, LLM latency {run['latency_s']:g} s, concurrency {run['concurrency']}",
                             f"{_num(run['evals_per_s'])} candidates/s ({run['evaluated']} evaluated; engine "
                             f"CPU {_num(run.get('engine_cpu_ms_per_candidate'))} ms/candidate)",
                             f"bound {_num(run['bound_per_s'])}/s = min({run['concurrency']}/{run['latency_s']:g} s, "
                             f"{cap['cores']} cores / {1e3 * cap['mean_eval_s']:.1f} ms)",
                             _pct(run["ratio"])))

    oe = results.get("openevolve")
    if oe is not None:
        if _why(oe):
            rows.append(("2 vs OpenEvolve", f"unavailable: {_why(oe)}", "", ""))
        else:
            for run in oe["runs"]:
                if run["error"]:
                    rows.append((f"2 vs OpenEvolve {oe['version']}, latency {run['latency_s']:g} s",
                                 f"failed: {run['error']}", "", ""))
                    continue
                others = ", ".join(f"{t['workers']} workers {_num(t.get('evals_per_s'))}/s" for t in run["tried"])
                rows.append((f"2 vs OpenEvolve {oe['version']}, latency {run['latency_s']:g} s",
                             f"evoforge {_num(run['evoforge_evals_per_s'])}/s, OpenEvolve "
                             f"{_num(run['openevolve_evals_per_s'])}/s",
                             f"OpenEvolve best of: {others}", f"{run['speedup']:.2f}×"))

    cpu = results.get("cpu")
    if cpu is not None:
        if _why(cpu):
            rows.append(("3 CPU-bound evaluations", f"unavailable: {_why(cpu)}", "", ""))
        else:
            rows.append(("3 CPU-bound evaluations, core utilisation",
                         f"{_num(cpu['eval_cpu_s'])} CPU s in {_num(cpu['wall_s'])} s on {cpu['cores']} cores "
                         f"({cpu['evaluated']} × {_num(1e3 * cpu['mean_eval_cpu_s'], '.0f')} ms)",
                         f"target ≥ 90 %; = slots busy {_pct(cpu.get('slot_occupancy'))} × CPU per "
                         f"evaluation wall {_pct(cpu.get('eval_cpu_per_wall'))}; all cores of the machine "
                         f"{_pct(cpu.get('machine_busy'))} busy", _pct(cpu["utilisation"])))

    iso = results.get("isolation")
    if iso is not None:
        if _why(iso):
            rows.append(("4 isolation overhead", f"unavailable: {_why(iso)}", "", ""))
        else:
            for name, r in iso.items():
                if _why(r):
                    rows.append((f"4 overhead: {name}", f"unavailable: {_why(r)}", "", ""))
                else:
                    what = "evaluations" if (',' in name or '+' in name) else "trivial evaluations"
                    rows.append((f"4 overhead: {name}",
                                 f"median {_num(r['median_ms'])} ms, p95 {_num(r['p95_ms'])} ms",
                                 f"{r['evaluations']} {what}, one at a time", ""))

    sc = results.get("scale")
    if sc is not None:
        if _why(sc):
            rows.append(("5 scale", f"unavailable: {_why(sc)}", "", ""))
        else:
            n = f"{sc['programs']:,}".replace(",", " ")
            rows.append((f"5 archive insertion, {n} programs", f"{_num(sc['archive_inserts_per_s'], '.0f')}/s",
                         f"4 islands × {sc['cells_per_island']} cells, {sc['elites']} elites", ""))
            rows.append((f"5 store writes, {n} programs", f"{_num(sc['store_writes_per_s'], '.0f')}/s",
                         "one transaction per candidate + its event", ""))
            rows.append((f"5 parent sampling, {n} stored", f"{_num(sc['parent_samples_per_s'], '.0f')}/s",
                         f"with SQLite reads of parent + inspirations: "
                         f"{_num(sc['parent_samples_with_reads_per_s'], '.0f')}/s", ""))

    mem = results.get("memory")
    if mem is not None:
        if _why(mem):
            rows.append(("5 engine memory", f"unavailable: {_why(mem)}", "", ""))
        else:
            rows.append((f"5 engine RSS at {mem['rss_at_label']} candidates", f"{_num(mem['rss_mb_at_1000'])} MiB",
                         f"offline run of {mem['candidates_run']} candidates", ""))
            how = "measured" if mem["target_measured"] else \
                f"extrapolated at {_num(mem['growth_kib_per_candidate'], '.2f')} KiB/candidate"
            rows.append((f"5 engine RSS at {mem['target']} candidates", f"{_num(mem['rss_mb_at_target'])} MiB",
                         how, ""))

    st = results.get("startup")
    if st is not None:
        if _why(st):
            rows.append(("6 start-up", f"unavailable: {_why(st)}", "", ""))
        else:
            oe = st.get("openevolve", {})
            reference = (f"OpenEvolve {oe['version']}: {_num(oe.get('first_request_s'), '.2f')} s to its first request "
                         f"({_num(oe.get('first_request_cpu_s'), '.2f')} s of its CPU)"
                         if "version" in oe else f"OpenEvolve unavailable: {_why(oe)}")
            rows.append(("6 launch → first LLM request (fake server)",
                         f"{_num(st['evoforge_first_request_s'], '.2f')} s, median of {st['repeats']} "
                         f"({_num(st.get('evoforge_first_request_cpu_s'), '.2f')} s of the engine's CPU)",
                         reference, _ratio(st.get("first_request_ratio"))))
            rows.append(("6 `evoforge show`", f"{_num(st['evoforge_show_s'], '.2f')} s", reference,
                         _ratio(st.get("show_ratio"))))
            rows.append(("6 `evoforge run --iterations 0`, offline", f"{_num(st['evoforge_iterations_0_s'], '.2f')} s",
                         "the whole command", ""))

    pl = results.get("placement")
    if pl is not None:
        if _why(pl):
            rows.append(("7 Ray placement", f"unavailable: {_why(pl)}", "", ""))
        else:
            for r in pl["runs"]:
                rows.append((f"7 Ray placement, {r['nodes']} simulated nodes",
                             f"{_num(r['evals_per_s'], '.2f')} evaluations/s ({r['evaluations']} sleeping "
                             f"{pl['sleep_s']:g} s, {r['nodes_used']} nodes used)",
                             f"bound {r['slots']} slots / {pl['sleep_s']:g} s = {_num(r['bound_per_s'], '.2f')}/s",
                             _pct(r["ratio"])))
                rows.append((f"7 multi-node overhead, {r['nodes']} nodes",
                             f"+{_num(r['overhead_ms'])} ms per evaluation",
                             f"trivial evaluation on Ray {_num(r['trivial_median_ms'])} ms vs local process "
                             f"sandbox {_num(pl['local_trivial_median_ms'])} ms (medians)", ""))

    header = ("benchmark", "measured", "reference", "ratio")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    if env:
        lines.append("")
        load = env.get("load_avg_1min")
        busy = (f", 1-minute load average {load['min']:.1f}–{load['max']:.1f} after the benchmarks"
                if load else "")
        lines.append(f"Machine: {env.get('cores')} cores ({env.get('cpu', '?')}){busy}, Python {env.get('python')}, "
                     f"{env.get('date')}; command: `{env.get('command')}`.")
    return "\n".join(lines)
