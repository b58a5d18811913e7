"""The few commands people run: ``minist <command> --help`` for each.

    minist train-teacher [--epochs 12 ...] [--resume] [--ship]
    minist train-student [--beta 0.08 ...] [--resume] [--ship]
    minist data make-subset | cache | show
    minist serve [--port 8765] [--variable] / minist send [--channel 4g] | [--deadline-ms 150 --trace markov:4g:0]
    minist bench [all|foundation|student|split|rd|explorer|variable|adaptive|photos|throughput|device|train|…]
    minist photos teacher|… (the real-photo study: minist/experiments/photos.py)
    minist sweep [--parts codecs,students,learned,crbq,e2e] [--quick] / minist sweep --collect [--ship]
    minist seeds runs/variable-warm-s0 runs/variable-warm-s1 …  (the variable-rate recipe over seeds)
    minist test-study [--limit 500 --out build/t --dest build/t/r.json]  (every shipped model on the test split)
    minist ceiling [--arms base,channels-24 …] [--collect-only] [--markdown]  (the ceiling ablation's arms)
    minist eval-codec --format jpeg --quality 10 [--preset paper --data-root /data/imagenet]
    minist train-task --task detection --beta 0.08 | --preset paper --student S.pt --data-root /data/coco
    minist tasks [--tasks detection,segmentation] [--betas 0.005,0.08,0.32] [--quick] / minist tasks --ship
    minist notebooks [--quick] [--out build/notebooks]
    minist figures
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import errno
import sys
import time
from pathlib import Path

import matplotlib
from torch.utils.data import Subset

from . import data as mdata
from . import distributed, pretrained
from .checkpoint import atomic_copy, write_json
from .config import StudentTrainConfig, TaskTrainConfig, TeacherTrainConfig
from .data.fashion import CLASSES, SUBSET_FILE, make_subset
from .data.synth import cached
from .evaluate import METRICS, codec_accuracy, evaluate_task, size_stats, student_predictor
from .experiments import bench, ceiling, photos, sweep, task_study, test_study, variable, web
from .experiments.figures import make_all
from .experiments.notebooks import run_all
from .export import export_bundle
from .models import tasks as T
from .models.store import load_student, save_task
from .plots import show_samples
from .recipes import ship_half, train_student, train_task_student, train_teacher
from .split import SplitClient, SplitServer, adaptive, get_channel
from .utils import data_dir


def add_dataclass_args(parser: argparse.ArgumentParser, cls) -> None:
    """One ``--flag`` per dataclass field, typed by its default (config is code; the CLI overrides it)."""
    for f in dataclasses.fields(cls):
        default = f.default
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, tuple) or "tuple" in str(f.type):
            number = int if "tuple[int" in str(f.type) else float
            shown = "the preset's" if default is None else ",".join(map(str, default))
            parser.add_argument(flag, type=lambda v, t=number: tuple(t(p) for p in v.split(",") if p),
                                default=default, help=f"comma-separated (default: {shown})")
        elif isinstance(default, bool) or str(f.type).startswith("bool"):
            shown = "where it is fast (auto)" if default is None else default
            parser.add_argument(flag, type=_flag_bool, default=default, help=f"true or false (default: {shown})")
        elif default is None:
            parser.add_argument(flag, type=_none_or_number, default=None)
        else:
            parser.add_argument(flag, type=type(default), default=default, help=f"(default: {default})")


def _flag_bool(s: str) -> bool:
    """``true``/``false`` (also 1/0, yes/no, on/off); anything else is an error, not a silent False."""
    word = s.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")


def _numbers(s: str) -> tuple[float, ...]:
    """``0.02,0.08`` → (0.02, 0.08); anything that is not a comma-separated list of numbers is an error."""
    try:
        values = tuple(float(p) for p in s.split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 0.02,0.08, got {s!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def _none_or_number(s: str):
    for t in (int, float):
        try:
            return t(s)
        except ValueError:
            pass
    return s


def _dataclass_from_args(cls, args):
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def _preset_from_args(cls, args):
    """``cls.preset_config(args.preset)`` with every flag the user changed from the default on top."""
    defaults = cls()
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
             if getattr(args, f.name) != getattr(defaults, f.name) and f.name != "preset"}
    return cls.preset_config(args.preset, **given)


def _ship(src: Path, dest: Path, half: bool = False) -> None:
    """Copy a finished checkpoint into data/ atomically (a crash leaves the old file); ``half``: fp16 weights,
    re-scored as stored (:func:`minist.recipes.ship_half`)."""
    if half:
        meta = ship_half(src, dest)
        score = (f"{meta['val_accuracy']:.2f} %" if "val_accuracy" in meta else
                 f"{meta['val']['accuracy']:.2f} % at {meta['val']['kb_mean']:.3f} KB")
        print(f"shipped as fp16 → {dest}: {score} as stored")
        return
    atomic_copy(src, dest)
    print(f"shipped → {dest}")


def cmd_train_teacher(args) -> int:
    cfg = _dataclass_from_args(TeacherTrainConfig, args)
    model, meta = train_teacher(cfg, resume=args.resume)
    out = Path(cfg.out) / "teacher.pt"
    print(f"val accuracy {meta['val_accuracy']:.2f} %  ({meta['train_seconds']:.0f} s of training) → {out}")
    if args.ship:
        _ship(out, data_dir() / pretrained.teacher_file("mini"), args.half)
    return 0


def cmd_train_student(args) -> int:
    cfg = _preset_from_args(StudentTrainConfig, args)   # the preset's recipe, the flags given on top
    cfg.check_data()            # before the teacher's weights download
    teacher = pretrained.teacher(cfg.preset)
    student, meta = train_student(cfg, teacher, resume=args.resume)
    if not distributed.is_main():           # under torchrun: rank 0 reports and ships
        distributed.shutdown()
        return 0
    v = meta["val"]
    out = Path(cfg.out) / "student.pt"
    for b, r in meta.get("val_by_beta", {}).items():
        print(f"  β = {b}: {r['accuracy']:.2f} % at {r['kb_mean']:.3f} KB/image")
    print(f"β = {v.get('beta', cfg.beta)}: accuracy {v['accuracy']:.2f} % at {v['kb_mean']:.3f} KB/image "
          f"({v['bpp']:.3f} bpp, "
          f"{v['header_bytes']} B header) on {v['n']} val images, real bytes → {out}")
    if args.ship:
        name = (pretrained.VARIABLE_FILE.format(preset=cfg.preset) if cfg.method == "variable-rate"
                else pretrained.student_file(cfg.preset, cfg.beta))
        _ship(out, data_dir() / name, args.half)
    return 0


def _student_from(args):
    if getattr(args, "checkpoint", None):
        return load_student(args.checkpoint)[0]
    if getattr(args, "variable", False):       # --beta is then the rate it sends at (any β of its grid)
        return pretrained.variable_student("mini")
    return pretrained.student("mini", beta=args.beta)


def cmd_serve(args) -> int:
    student = _student_from(args)
    _, server_part = student.split()
    sizes = None
    if args.input_size:
        for size in args.input_size:
            if not 32 <= size <= 4096:
                raise ValueError(f"--input-size must be in 32…4096 px, got {size}")
        sizes = {student.latent_size(size) for size in args.input_size}
    server = SplitServer(server_part, host=args.host, port=args.port, max_frame=args.max_frame,
                         timeout=args.timeout, classes=CLASSES, latent_sizes=sizes,
                         max_connections=args.max_connections, idle_timeout=args.idle_timeout,
                         lifetime=args.lifetime)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}, reachable from other machines", file=sys.stderr)
    banner = lambda srv: print(f"minist server: decoder + layer2…head on {srv.host}:{srv.port} (Ctrl-C to stop)",  # noqa: E731
                               flush=True)
    try:
        asyncio.run(server.serve(on_ready=banner))   # the banner names the bound port (--port 0 picks one)
    except KeyboardInterrupt:
        pass
    print(f"served {server.stats['requests']} requests, {server.stats['errors']} errors")
    return 0


def cmd_export(args) -> int:
    manifest = export_bundle(_student_from(args), args.out, args.input_size)
    size = sum(p.stat().st_size for p in manifest.parent.iterdir()) / 1024
    print(f"device bundle in {manifest.parent} ({size:.0f} KB); on the device: "
          f"pip install ./device && minist-device send IMAGE --bundle {manifest.parent}")
    return 0


def cmd_send(args) -> int:
    if args.deadline_ms is not None or args.trace is not None:
        return _send_adaptive(args)
    student = _student_from(args)
    device_part, _ = student.split()
    val = mdata.load("fashion-on-photos", split="val", task="classification")
    channel = get_channel(args.channel) if args.channel != "none" else None
    print(f"{'image':>5} {'true':>12} {'predicted':>12} {'bytes':>6} {'encode ms':>9} {'channel ms':>10} "
          f"{'server ms':>9} {'total ms':>8}")
    with SplitClient(args.host, args.port, channel=channel) as client:
        for i in range(args.n):
            x, y = val[i]
            tic = time.perf_counter()
            message = device_part(x.unsqueeze(0), beta=args.beta)
            enc = 1000 * (time.perf_counter() - tic)
            r = client.infer(message)
            print(f"{i:>5} {val.classes[y]:>12} {r.get('class', r['label']):>12} {r['bytes_sent']:>6} {enc:>9.1f} "
                  f"{r['channel_ms']:>10.1f} {r['server_ms']:>9.1f} {enc + r['round_trip_ms']:>8.1f}")
    return 0


def _send_adaptive(args) -> int:
    """``minist send --deadline-ms D --trace T``: per request, the β that meets D on the trace's link of that second."""
    if args.deadline_ms is None or args.trace is None:
        raise ValueError("an adaptive send needs both --deadline-ms and --trace (a CSV, or markov:4g:SEED)")
    student = load_student(args.checkpoint)[0] if args.checkpoint else pretrained.variable_student("mini")
    trace = adaptive.load_trace(args.trace)
    val = mdata.load("fashion-on-photos", split="val", task="classification")
    controller = adaptive.controller_for(student, args.deadline_ms, pretrained.variable_results("mini"),
                                         Subset(val, range(8)), args.slowdown)
    device = adaptive.AdaptiveDevice(student.split()[0], controller)
    print(f"trace {trace.name} ({trace.duration_s:.0f} s), deadline {args.deadline_ms:g} ms, one request every "
          f"{1000 / args.rate_hz:.0f} ms of trace time, device ×{args.slowdown:g}; modelled channel, real bytes")
    print(f"{'t s':>6} {'kbit/s':>8} {'RTT ms':>6} {'β':>7} {'bytes':>6} {'predicted':>9} {'modelled':>8} "
          f"{'wall ms':>7} {'met':>3} {'true':>12} {'predicted':>12}")
    met = correct = 0
    with SplitClient(args.host, args.port) as client:
        for r in adaptive.replay_trace(device, client, trace, val, args.n, args.rate_hz):
            link, reply = r["link"], r["reply"]
            met += r["met"]
            correct += reply["label"] == r["label"]
            print(f"{r['t']:>6.1f} {link.uplink_bps / 1e3:>8.0f} {1000 * link.rtt_s:>6.0f} {r['option'].value:>7.4f} "
                  f"{r['bytes']:>6} {r['choice'].predicted_ms:>9.1f} {r['modelled_ms']:>8.1f} {r['wall_ms']:>7.1f} "
                  f"{'✓' if r['met'] else '✗':>3} {val.classes[r['label']]:>12} "
                  f"{reply.get('class', reply['label']):>12}" + ("" if r["feasible"] else f"  ({r['choice'].reason})"))
    print(f"{met} of {args.n} deadlines met, {correct} of {args.n} correct")
    return 0


def cmd_data(args) -> int:
    if args.action == "make-subset":
        out = args.out or data_dir() / SUBSET_FILE
        path = make_subset(args.source, out, args.per_class_train, args.per_class_test)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    elif args.action == "cache":
        for task in ("classification", "detection"):
            t = time.time()
            ds = cached("val", task, refresh=args.refresh, size=args.size)
            print(f"{task}: {len(ds)} val images cached in {time.time() - t:.1f} s, sha256 {ds.digest()[:16]}…")
    elif args.action == "show":
        matplotlib.use("Agg")
        ds = mdata.load("fashion-on-photos", split=args.split, task=args.task, cache=False)
        fig = show_samples(ds, n=args.n)
        fig.savefig(args.out, dpi=110)
        print(f"wrote {args.out}")
    return 0


def cmd_bench(args) -> int:
    return bench.main(quick=args.quick, which=args.which, write=args.write)


def cmd_notebooks(args) -> int:
    return run_all(out=args.out, quick=args.quick, pattern=args.only, timeout=args.timeout)


def cmd_web(args) -> int:
    try:
        sizes = web.build(args.out)
    except FileNotFoundError as e:
        print(f"minist web: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}/index.html: {sizes['total'] / 1e6:.2f} MB in {len(sizes['files'])} files "
          f"(open it from disk or any static host)")
    for position, path in zip(args.slider, args.screenshot or []):
        print(f"wrote {web.screenshot(args.out, path, position)}")
    return 0


def cmd_sweep(args) -> int:
    parts = tuple(p for p in args.parts.split(",") if p)
    if not (args.collect or args.ship):
        sweep.run(parts=parts, out=args.out, quick=args.quick, betas=args.betas,
                  qualities=None if args.qualities is None else [int(q) for q in args.qualities])
    if args.merge:
        dest, new = sweep.merge(Path(args.out))
        print(f"merged {len(new)} codec points into {dest}")
        return 0
    if args.collect or args.ship:
        if args.ship:
            for path in sweep.ship_students(args.out):
                print(f"shipped as fp16 → {path}")
        dest = sweep.collect(Path(args.out),
                             dest=None if args.ship else Path(args.out) / pretrained.results_file("mini"))
        print(f"wrote {dest}")
    return 0


def cmd_tasks(args) -> int:
    names = tuple(t for t in args.tasks.split(",") if t)
    betas = tuple(float(b) for b in args.betas.split(",") if b)
    if args.diagnose:    # eval-only hybrids of the task teacher and student on the val scenes
        for task in names:
            dest = task_study.diagnose(task, teachers=args.teachers, students=args.students,
                                       n=20 if args.quick else 500, out=args.out or "runs/tasks-diagnosis")
            print(f"wrote {dest}")
        return 0
    if args.test:        # the reporting set: shipped task models only, no training, no choice
        dest = task_study.test(tasks=names, out=args.out or ("runs/tasks-test-quick" if args.quick else
                                                             "runs/tasks-test"),
                               n=20 if args.quick else task_study.TEST_SCENES, teachers=args.teachers,
                               students=args.students)
        print(f"wrote {dest}")
        if args.ship:
            print(f"shipped → {task_study.ship_test(dest.parent)}")
        return 0
    args.out = args.out or ("runs/tasks-quick" if args.quick else "runs/tasks")   # never mix quick points in
    if not (args.collect or args.ship):
        recipe = {k: v for k, v in (("stage2_epochs", args.stage2_epochs), ("epochs", args.teacher_epochs),
                                    ("stage2_distill", args.stage2_distill), ("stage2_tune", args.stage2_tune),
                                    ("teacher_tune", args.teacher_tune), ("refine_blocks", args.refine_blocks))
                  if v is not None}
        recipe.update({"resume": True} if args.resume else {})
        task_study.run(tasks=names, betas=betas, out=args.out, quick=args.quick, variable=args.variable,
                       shipped_teachers=args.shipped_teachers, **recipe)
    if args.ship:
        for path in task_study.ship(args.out, merge=args.merge):
            print(f"shipped → {path}")
    elif args.collect or not args.quick:
        print(f"wrote {task_study.collect(args.out, dest=Path(args.out) / task_study.RESULTS_FILE)}")
    return 0


def cmd_seeds(args) -> int:
    doc = variable.seed_study(args.runs, shipped=pretrained.variable_student("mini", with_meta=True)[1])
    doc["made_by"] = "minist seeds " + " ".join(args.runs)
    dest = Path(args.dest) if args.dest else data_dir() / pretrained.VARIABLE_SEEDS_FILE
    write_json(dest, doc)
    print(f"{'β':>6} " + " ".join(f"{'seed ' + str(r['seed']):>15}" for r in doc["runs"]) + f" {'mean ± sd':>16}")
    for row in doc["anchors"]:
        b = f"{row['beta']:g}"
        cells = " ".join(f"{r['by_beta'][b]['accuracy']:6.2f} % {r['by_beta'][b]['bytes_mean']:4.0f} B"
                         for r in doc["runs"])
        sd = "" if row["accuracy_sd"] is None else f" ± {row['accuracy_sd']:.2f}"
        print(f"{b:>6} {cells} {row['accuracy_mean']:8.2f}{sd} %")
    print("at equal bytes: " + ", ".join(f"{r['kb']:g} KB ± {r['accuracy_sd']:.2f}" for r in doc["at_equal_kb"]
                                         if r["accuracy_sd"] is not None) + " pt (sd over the seeds)")
    print(f"collapsed: {doc['collapsed'] or 'none'} → {dest}")
    return 0


def cmd_eval_codec(args) -> int:
    """The input-compression baseline on one preset's val set: JPEG/WebP at one quality + the unmodified teacher."""
    cfg = StudentTrainConfig.preset_config(args.preset, data_root=args.data_root)
    _, val = cfg.datasets()
    teacher = pretrained.teacher(args.preset)
    acc, sizes, headers = codec_accuracy(teacher, val, args.format, args.quality, limit=args.limit,
                                         return_sizes=True)
    st = size_stats(sizes, tuple(val[0][0].shape[-2:]))
    print(f"{args.format} q{args.quality}: top-1 {acc:.2f} % at {st['kb_mean']:.3f} KB/image ({st['bpp']:.3f} bpp, "
          f"header {sum(headers) / len(headers):.0f} B) on {st['n']} val images")
    return 0


def cmd_train_task(args) -> int:
    """One task student on a frozen classification student (paper: torchvision's COCO/VOC task teachers)."""
    cfg = _preset_from_args(TaskTrainConfig, args)
    if cfg.beta is None and not args.student:
        raise ValueError("name the shared encoder: --beta B (a shipped mini student) or --student <student.pt>")
    train_set, val_set = cfg.datasets()
    distributed.init(cfg.device)
    if cfg.preset == "paper":
        task_teacher = T.build_paper_task_teacher(cfg.task, cfg.image_size)
    else:
        task_teacher = pretrained.task_teacher(cfg.task)
    student = load_student(args.student)[0] if args.student else pretrained.student(cfg.preset, beta=cfg.beta)
    net, meta = train_task_student(cfg, task_teacher, student, train_set=train_set, val_set=val_set)
    res = evaluate_task(cfg.task, student_predictor(net), val_set, limit=args.eval_limit, progress=True)
    if distributed.is_main():
        out = Path(cfg.out) / f"task_student_{cfg.preset}_{cfg.task}.pt"
        save_task(out, net, {**meta, "val": {k: v for k, v in res.items() if k != "sizes"}})
        kb = sum(res["sizes"]) / max(1, len(res["sizes"])) / 1024
        print(f"{cfg.task}: " + ", ".join(f"{k} {res[k]:.2f}" for k in METRICS[cfg.task]) +
              f" at {kb:.3f} KB/image on {res['n']} val images, real bytes → {out}")
    distributed.shutdown()
    return 0


def cmd_figures(args) -> int:
    for p in make_all(args.out):
        print(f"wrote {p}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minist", description="minist: supervised compression for split computing")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error (anywhere on the line)")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train-teacher", help="train the mini teacher on Fashion-on-Photos")
    add_dataclass_args(t, TeacherTrainConfig)
    t.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    t.add_argument("--ship", action="store_true", help="copy the result to data/teacher_mini.pt")
    t.add_argument("--half", action="store_true", help="--ship with fp16 weights, re-scored as stored")
    t.set_defaults(fn=cmd_train_teacher)

    s = sub.add_parser("train-student", help="train an Entropic Student (stage 1 + stage 2) at one β")
    add_dataclass_args(s, StudentTrainConfig)
    s.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    s.add_argument("--ship", action="store_true", help="copy the result to data/student_mini_beta<β>.pt")
    s.add_argument("--half", action="store_true", help="--ship with fp16 weights, re-scored as stored")
    s.set_defaults(fn=cmd_train_student)

    sv = sub.add_parser("serve", help="run the server half of the split (decoder + rest of the network)")
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default: localhost only)")
    sv.add_argument("--port", type=int, default=8765)
    sv.add_argument("--beta", type=float, default=None, help="shipped student β (default: the default β)")
    sv.add_argument("--checkpoint", default=None, help="a student checkpoint instead of a shipped one")
    sv.add_argument("--variable", action="store_true", help="serve the shipped variable-rate student (any β)")
    sv.add_argument("--max-frame", type=int, default=1 << 20, help="largest accepted frame in bytes")
    sv.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a frame")
    sv.add_argument("--input-size", type=int, nargs="+", default=None,
                    help="image sizes whose latents are decoded (default: the model's training size)")
    sv.add_argument("--max-connections", type=int, default=64, help="clients served at once; more are refused")
    sv.add_argument("--idle-timeout", type=float, default=60.0, help="close a connection after this many s "
                    "without a request (PINGs do not count)")
    sv.add_argument("--lifetime", type=float, default=600.0, help="close any connection after this many s")
    sv.set_defaults(fn=cmd_serve)

    se = sub.add_parser("send", help="run the device half: encode val images and send them to a server")
    se.add_argument("--host", default="127.0.0.1")
    se.add_argument("--port", type=int, default=8765)
    se.add_argument("--beta", type=float, default=None)
    se.add_argument("--checkpoint", default=None)
    se.add_argument("--channel", default="4g", help="lora, ble, 3g, 4g, 5g, wifi or none")
    se.add_argument("--variable", action="store_true", help="send with the shipped variable-rate student (at --beta)")
    se.add_argument("--n", type=int, default=8, help="how many val images to send")
    se.add_argument("--deadline-ms", type=float, default=None,
                    help="adaptive: per request, the β with the best expected accuracy that meets this deadline "
                         "(a variable-rate student; needs --trace)")
    se.add_argument("--trace", default=None, help="adaptive: the link over time, a CSV (time_s,uplink_kbps,rtt_ms"
                    "[,downlink_kbps]) or markov:PRESET[:SEED[:SECONDS]] with PRESET 4g, 5g or wifi")
    se.add_argument("--rate-hz", type=float, default=5.0, help="adaptive: requests per second of trace time")
    se.add_argument("--slowdown", type=float, default=1.0, help="adaptive: the device is this many times slower "
                    "than this machine")
    se.set_defaults(fn=cmd_send)

    d = sub.add_parser("data", help="make the shipped Fashion-MNIST subset, the val cache, or a sample grid")
    d.add_argument("action", choices=("make-subset", "cache", "show"))
    d.add_argument("--source", default="debian", help="Fashion-MNIST source for make-subset (default: debian)")
    d.add_argument("--out", default=None)
    d.add_argument("--per-class-train", type=int, default=800)
    d.add_argument("--per-class-test", type=int, default=200)
    d.add_argument("--size", type=int, default=128)
    d.add_argument("--refresh", action="store_true")
    d.add_argument("--split", default="val")
    d.add_argument("--task", default="classification")
    d.add_argument("--n", type=int, default=16)
    d.set_defaults(fn=cmd_data)

    b = sub.add_parser("bench", help="print the benchmark table (data, teacher, accuracy)")
    b.add_argument("which", nargs="?", default="all", choices=("all", *bench.BENCHMARKS))
    b.add_argument("--quick", action="store_true")
    b.add_argument("--write", action="store_true", help="variable: measure and write data/results_variable_mini.json "
                   "(≈30 min on one thread); without it, print the shipped file's tables")
    b.set_defaults(fn=cmd_bench)

    x = sub.add_parser("export", help="write a device bundle (ONNX encoder + coding tables) for minist-device")
    x.add_argument("--beta", type=float, default=None, help="shipped student β (default: the default β)")
    x.add_argument("--checkpoint", default=None, help="a student checkpoint instead of a shipped one")
    x.add_argument("--variable", action="store_true", help="the shipped variable-rate student (every β of its grid)")
    x.add_argument("--out", default="build/bundle", help="folder to write (default build/bundle)")
    x.add_argument("--input-size", type=int, default=None, help="image size the device encodes (default: training)")
    x.set_defaults(fn=cmd_export)

    n = sub.add_parser("notebooks", help="execute every notebook top to bottom; write .ipynb and .html")
    n.add_argument("--out", default="build/notebooks")
    n.add_argument("--quick", action="store_true", help="set MINIST_QUICK=1 (what CI runs)")
    n.add_argument("--only", default="*.ipynb", help="glob of notebooks to run")
    n.add_argument("--timeout", type=int, default=600,
                   help="seconds a cell may run; a notebook that runs past it is run once more from the top")
    n.set_defaults(fn=cmd_notebooks)

    wb = sub.add_parser("web", help="build the β explorer as a static web page (the whole split in the browser)")
    wb.add_argument("--out", default="build/web", help="folder to write (replaced; default build/web)")
    wb.add_argument("--screenshot", nargs="+", metavar="PNG", help="also save the page in headless Chromium, one "
                    "PNG per --slider position")
    wb.add_argument("--slider", nargs="+", type=int, default=[150, 850], help="slider positions (0 … 1000, log β) "
                    "of the screenshots (default 150 850)")
    wb.set_defaults(fn=cmd_web)

    w = sub.add_parser("sweep", help="the rate–accuracy study: β sweep, stage-1 ablation and every baseline")
    w.add_argument("--parts", default="codecs,students,learned,crbq,e2e",
                   help="comma-separated subset of " + ",".join(sweep.PARTS)
                   + " (the last two: the stage-1 loss ablation)")
    w.add_argument("--betas", type=_numbers, default=None,
                   help="comma-separated β of the students (default: " + ",".join(f"{b:g}" for b in sweep.BETAS)
                   + ") or the ablation parts (default: " + ",".join(f"{b:g}" for b in sweep.ABLATION_BETAS) + ")")
    w.add_argument("--out", default="runs/sweep", help="one JSON per point and the checkpoints go here")
    w.add_argument("--qualities", type=_numbers, default=None,
                   help="codecs part: only these qualities of the study's grids (e.g. 0,1: each codec's smallest)")
    w.add_argument("--merge", action="store_true", help="after the run, put its JPEG/WebP points into the shipped "
                   "data/results_mini.json, keeping every other point")
    w.add_argument("--quick", action="store_true", help="a tiny sweep (a few steps, 20–100 images)")
    w.add_argument("--collect", action="store_true", help="only merge the points (into <out>/results_mini.json)")
    w.add_argument("--ship", action="store_true",
                   help="do not train: store the β-grid students in data/ (fp16) and write data/results_mini.json")
    w.set_defaults(fn=cmd_sweep)

    vs = sub.add_parser("seeds", help="the variable-rate recipe over seeds: every anchor β's val accuracy and bytes "
                        "per finished run, mean ± sd, collapses → data/results_variable_seeds_mini.json")
    vs.add_argument("runs", nargs="+", help="the runs' folders (each with its student.pt)")
    vs.add_argument("--dest", default=None, help="default: data/results_variable_seeds_mini.json")
    vs.set_defaults(fn=cmd_seeds)

    ts = sub.add_parser("test-study", help="score every shipped mini model on the 10,000-image test split (no "
                        "choice saw it): data/results_test_mini.json, the README's headline numbers")
    ts.add_argument("--methods", default=",".join(test_study.METHODS),
                    help="comma-separated subset of " + ",".join(test_study.METHODS))
    ts.add_argument("--out", default=str(test_study.OUT), help="one JSON per point goes here (resumable)")
    ts.add_argument("--limit", type=int, default=None, help="only the first N test images (a quick look; write "
                    "it elsewhere with --out and --dest)")
    ts.add_argument("--dest", default=None, help="the result file (default: data/results_test_mini.json)")
    ts.add_argument("--collect-only", action="store_true", help="score nothing: merge the points under --out")
    ts.add_argument("--markdown", action="store_true", help="score nothing: print the README's table from the "
                    "shipped result file")
    ts.set_defaults(fn=test_study.main)

    ce = sub.add_parser("ceiling", help="the ceiling ablation's training arms: the mini recipe at β 0.02 with one "
                        "factor changed per arm, trained (resumable) and scored on the val set, paired against the "
                        "base arm → data/results_ceiling_mini.json")
    ce.add_argument("--arms", default=None, help="comma-separated subset of " + ",".join(a.name for a in ceiling.ARMS))
    ce.add_argument("--out", default=str(ceiling.OUT), help="one folder per arm (resumable)")
    ce.add_argument("--dest", default=None, help="the result file (default: data/results_ceiling_mini.json)")
    ce.add_argument("--quick", action="store_true", help="two steps per stage on a few images (the machinery only)")
    ce.add_argument("--test", action="store_true", help="then score the budget arms (" + ",".join(ceiling.TEST_ARMS)
                    + ") once on the 10,000-image test split (≈3 min each)")
    ce.add_argument("--collect-only", action="store_true", help="train nothing: collect the finished arms")
    ce.add_argument("--markdown", action="store_true", help="train nothing: print the table of the shipped file")
    ce.set_defaults(fn=ceiling.main)

    ec = sub.add_parser("eval-codec", help="JPEG/WebP + the unmodified teacher on a preset's val set (a baseline "
                                           "point; --preset paper: ImageNet)")
    ec.add_argument("--preset", default="mini", choices=("mini", "paper"))
    ec.add_argument("--data-root", default=None, help="the paper preset: ImageNet folder (train/ and val/)")
    ec.add_argument("--format", default="jpeg", choices=("jpeg", "webp"))
    ec.add_argument("--quality", type=int, default=10)
    ec.add_argument("--limit", type=int, default=None, help="score only the first N val images")
    ec.set_defaults(fn=cmd_eval_codec)

    tt = sub.add_parser("train-task", help="train one task student (detection or segmentation) on a frozen "
                                           "classification student's encoder; --preset paper: COCO / VOC")
    add_dataclass_args(tt, TaskTrainConfig)
    tt.add_argument("--student", default=None, help="a classification student checkpoint (the shared encoder)")
    tt.add_argument("--eval-limit", type=int, default=None, help="score only the first N val images")
    tt.set_defaults(fn=cmd_train_task)

    k = sub.add_parser("tasks", help="detection + segmentation on the shared bitstream: task teachers, task "
                                     "students at several β, JPEG/WebP baselines (notebook 04)")
    k.add_argument("--tasks", default="detection,segmentation")
    k.add_argument("--betas", default=",".join(f"{b:g}" for b in task_study.BETAS),
                   help="shipped classification students to build on")
    k.add_argument("--out", default=None,
                   help="checkpoints and one JSON per point go here, resumable (default: runs/tasks, or "
                        "runs/tasks-quick with --quick)")
    k.add_argument("--quick", action="store_true", help="a few steps on 20 scenes")
    k.add_argument("--variable", action="store_true", help="also one task student per task on the variable-rate "
                   "student's bitstream (trained at every β of its grid, scored at its anchors)")
    k.add_argument("--shipped-teachers", action="store_true", help="use data/'s task teachers and leave their "
                   "points (teacher, JPEG, WebP) to the shipped results: a new student arm on the shipped study")
    k.add_argument("--merge", action="store_true", help="with --ship: keep the shipped points this run did not "
                   "measure (a new arm whose older runs are not on this machine)")
    k.add_argument("--collect", action="store_true", help="only merge the points into <out>/results_tasks_mini.json")
    k.add_argument("--stage2-epochs", type=int, default=None, help="the task students' stage 2 (default: "
                   "tasks.STUDENT_RECIPE's 4; task_study.VARIABLE_RECIPE's for --variable)")
    k.add_argument("--stage2-distill", type=float, default=None, metavar="GAMMA", help="the task students' stage 2 "
                   "adds GAMMA × the FPN levels' relative error to the task teacher's (default: the task loss alone)")
    k.add_argument("--stage2-tune", default=None, metavar="LAYERS", help="the task students' stage 2 also trains "
                   "these backbone stages, comma-separated, e.g. layer2,layer3,layer4 (default: none; frozen as the "
                   "task teacher's)")
    k.add_argument("--refine-blocks", type=int, default=None, metavar="N", help="the task students get N residual "
                   "3×3 blocks after the decoder, on the server (the bitstream is unchanged; default: none)")
    k.add_argument("--teacher-tune", default=None, metavar="LAYERS", help="the task teachers also train these "
                   "backbone stages (default: TaskTrainConfig.teacher_tune, layer2,layer3,layer4, what the "
                   "variable-rate task students retrain; '' keeps the classification teacher's frozen)")
    k.add_argument("--teacher-epochs", type=int, default=None, help="the task teachers' epochs (default: "
                   "TaskTrainConfig.epochs = 21)")
    k.add_argument("--resume", action="store_true", help="go on from the last finished epoch of an interrupted "
                   "training in --out")
    k.add_argument("--teachers", default=None, help="with --test or --diagnose: score against the task teachers of "
                   "this run folder (task_teacher_mini_<task>.pt, e.g. a longer recipe's) instead of data/'s")
    k.add_argument("--students", default=None, help="with --test or --diagnose: score the variable-rate task "
                   "students of this run folder (task_student_mini_<task>_variable.pt) instead of data/'s")
    k.add_argument("--diagnose", action="store_true", help="where the variable-rate task student loses: the task "
                   "teacher and student and three hybrids (each one's network on the other's layer1; the teacher on a "
                   "half-resolution layer1) on the 500 val scenes, detection with COCO's breakdown; with --teachers / "
                   "--students for a run folder's models → <out>/diagnosis_<task>.json")
    k.add_argument("--test", action="store_true", help="score the shipped task models on the test split (2,000 "
                   "scenes no choice has seen; paired bootstrap ÷ teacher) into <out>/results_tasks_test_mini.json "
                   "(default out: runs/tasks-test); with --ship, copy it to data/")
    k.add_argument("--ship", action="store_true", help="do not train: copy the task models and results to data/")
    k.set_defaults(fn=cmd_tasks)

    f = sub.add_parser("figures", help="draw the README's figures from the project's code and data")
    f.add_argument("--out", default="docs")
    f.set_defaults(fn=cmd_figures)
    return p


# what a user's input can cause (a bad flag value, a missing or damaged file, a busy port, a server that refuses):
# one line on stderr and exit code 2; `minist --debug …` shows the traceback instead
USER_ERRORS = (ValueError, TypeError, KeyError, OSError, OverflowError, RuntimeError)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if argv[:1] == ["photos"]:          # the real-photo study parses its own options
        return photos.main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "data" and args.action == "show" and args.out is None:
        args.out = "samples.png"
    try:
        return args.fn(args) or 0
    except KeyboardInterrupt:
        print("minist: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        if debug:
            raise
        text = " ".join(str(e).split()) or type(e).__name__
        if isinstance(e, OSError) and e.errno == errno.EADDRINUSE:
            text = f"port already in use ({text}); pick another with --port, or stop the other server"
        print(f"minist: error: {text} (run with --debug for the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
