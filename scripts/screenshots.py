"""Write docs/screenshots/train.svg and eval.svg: the app fed with deterministic events.

    python scripts/screenshots.py [--out docs/screenshots] [--size 120x40]
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from tt_tui.demo import demo_app, eval_events, settle, train_events


async def shoot(mode: str, events, out: Path, size: tuple[int, int]) -> Path:
    app = demo_app(mode, events)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        path = Path(app.save_screenshot(filename=f"{mode}.svg", path=str(out)))
        await pilot.press("q")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    parser.add_argument("--size", default="120x40", help="WIDTHxHEIGHT")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    args.out.mkdir(parents=True, exist_ok=True)
    for mode, events in (("train", train_events()), ("eval", eval_events())):
        print(asyncio.run(shoot(mode, events, args.out, size)))


if __name__ == "__main__":
    main()
