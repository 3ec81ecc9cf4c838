"""``imagetrail k8s sync``: send a cluster's running containers and their exposure to the backend."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import List, Optional, Sequence

from imagetrail.client.api import ApiClient, ApiError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imagetrail k8s", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    sync = sub.add_parser("sync", help="replace the backend's view of one cluster with what runs now")
    sync.add_argument("--cluster", required=True, help="the cluster's name in ImageTrail")
    source = sync.add_mutually_exclusive_group()
    source.add_argument(
        "--from-file",
        action="append",
        metavar="FILE",
        help="kubectl get pods,services,ingresses,replicasets,jobs,httproutes -A -o json|yaml "
        "output (repeatable); '-' reads standard input",
    )
    source.add_argument("--in-cluster", action="store_true", help="use the pod's service account")
    sync.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    sync.add_argument("--context", help="kubeconfig context (default: the current context)")
    sync.add_argument("--page-size", type=int, default=500, help="objects per list request (default 500)")
    sync.add_argument(
        "--allow-empty",
        action="store_true",
        help="accept an inventory with no containers for a cluster that had some (refused otherwise)",
    )
    sync.add_argument(
        "--watch",
        action="store_true",
        help="keep running: watch the cluster and send changes as they happen (live source only)",
    )
    sync.add_argument("--flush-seconds", type=float, default=2.0,
                      help="with --watch: batch changes this long before sending (default 2)")
    sync.add_argument("--resync-seconds", type=float, default=3600.0,
                      help="with --watch: relist everything and send the full inventory this often (default 3600)")
    sync.add_argument(
        "--output",
        metavar="FILE",
        help="write the normalised inventory to FILE ('-' for stdout) instead of sending it",
    )
    return parser


def _read_files(paths: List[str]):
    from imagetrail.parsers.k8s_inventory import load_objects

    objects = []
    for path in paths:
        if path == "-":
            objects.extend(load_objects(sys.stdin.read(), "<stdin>"))
            continue
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"{path}: cannot read ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not UTF-8 text; expected kubectl JSON or YAML output") from None
        objects.extend(load_objects(text, path))
    return objects


def _watch(args) -> int:
    import logging
    import signal

    from imagetrail.client.k8s_live import ClusterAccessError, api_client
    from imagetrail.client.k8s_watch import ApiSink, ClusterWatch, WatchOptions

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = WatchOptions(page_size=args.page_size, flush_seconds=args.flush_seconds,
                           resync_seconds=args.resync_seconds, allow_empty=args.allow_empty)
    try:
        watch = ClusterWatch(api_client(args.kubeconfig, args.context, args.in_cluster), args.cluster,
                             ApiSink(ApiClient(timeout=300)), options)
    except ClusterAccessError as exc:
        print(f"imagetrail k8s sync: {exc}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: watch.stop())  # a pod being stopped ends the loop cleanly
    try:
        stats = watch.run()
    except KeyboardInterrupt:
        watch.stop()
        return 0
    except (ClusterAccessError, ApiError) as exc:
        print(f"imagetrail k8s sync: {exc}", file=sys.stderr)
        return 1
    print(f"cluster {args.cluster}: {stats.full_syncs} full sync(s), {stats.change_batches} change batch(es), "
          f"{stats.relists} relist(s), {stats.reconnects} reconnect(s), {stats.scans_sent} report(s) sent")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.watch:
        if args.from_file or args.output:
            print("imagetrail k8s sync: --watch reads a live cluster; it cannot be combined with "
                  "--from-file or --output", file=sys.stderr)
            return 2
        return _watch(args)
    from imagetrail.gc_pause import paused_gc
    from imagetrail.parsers.k8s_inventory import InventoryError, normalize

    collected_at = datetime.now(timezone.utc).isoformat()
    try:
        if args.from_file:
            objects, source = _read_files(args.from_file), "file"
        else:
            from imagetrail.client.k8s_live import ClusterAccessError, api_client, fetch_objects

            try:
                with paused_gc():  # the client builds a model object per pod, service, ...
                    objects = fetch_objects(
                        api_client(args.kubeconfig, args.context, args.in_cluster), args.page_size
                    )
            except ClusterAccessError as exc:
                print(f"imagetrail k8s sync: {exc}", file=sys.stderr)
                return 1
            source = "live"
    except (InventoryError, ValueError) as exc:
        print(f"imagetrail k8s sync: {exc}", file=sys.stderr)
        return 1
    from pydantic import ValidationError

    from imagetrail.inventory import describe

    try:
        inventory = normalize(objects, args.cluster, source, collected_at)
    except ValidationError as exc:  # the backend would refuse it the same way: say which container
        print(f"imagetrail k8s sync: the inventory of cluster {args.cluster} is not valid: {describe(exc)}",
              file=sys.stderr)
        return 1
    inventory.allow_empty = args.allow_empty
    if args.output:
        text = inventory.to_json(indent=1)
        if args.output == "-":
            print(text)
        else:
            Path(args.output).write_text(text, encoding="utf-8")
        return 0
    try:
        answer = ApiClient(timeout=300).request(
            "POST",
            f"/v1/clusters/{args.cluster}/inventory",
            data=inventory.to_json(),
            headers={"Content-Type": "application/json"},
        )
    except ApiError as exc:
        print(f"imagetrail k8s sync: {exc}", file=sys.stderr)
        return 1
    from imagetrail.views.writes import InventoryAnswer

    synced = InventoryAnswer.model_validate(answer)
    print(
        f"cluster {synced.cluster}: {synced.containers} containers in {inventory.pods} pods "
        f"({synced.exposed} exposed); replaced {synced.replaced} from the previous sync"
    )
    for warning in inventory.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    unknown = sum(1 for c in inventory.containers if c.digest is None)
    if unknown:
        print(
            f"warning: {unknown} container(s) have no known manifest digest (see 'imagetrail query --gaps')",
            file=sys.stderr,
        )
    return 0
