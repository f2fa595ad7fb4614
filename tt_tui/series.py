"""Bounded, evenly decimated history of a metric (the loss curve of a million steps).

Points are kept with a stride; when more than `max_points` are kept, every other
point is dropped and the stride doubles, so memory and plot time stay bounded while
the kept points stay evenly spaced over the whole run. The newest point is always
shown, so the curve ends where training is now.
"""

from __future__ import annotations

from typing import Sequence


class DecimatedSeries:
    def __init__(self, names: Sequence[str], max_points: int = 1000) -> None:
        if max_points < 2:
            raise ValueError("max_points must be >= 2")
        self.names = tuple(names)
        self.max_points = max_points
        self.stride = 1
        self.seen = 0
        self._x: list[float] = []
        self._y: list[tuple[float, ...]] = []
        self._last: tuple[float, tuple[float, ...]] | None = None

    def append(self, x: float, values: Sequence[float]) -> None:
        values = tuple(float(v) for v in values)
        if self.seen % self.stride == 0:
            self._x.append(float(x))
            self._y.append(values)
            if len(self._x) > self.max_points:
                self._x, self._y = self._x[::2], self._y[::2]
                self.stride *= 2
        self.seen += 1
        self._last = (float(x), values)

    def __len__(self) -> int:
        return len(self.xs())

    def xs(self) -> list[float]:
        if self._last is not None and (not self._x or self._x[-1] != self._last[0]):
            return self._x + [self._last[0]]
        return list(self._x)

    def column(self, name: str) -> list[float]:
        i = self.names.index(name)
        ys = [v[i] for v in self._y]
        if self._last is not None and (not self._x or self._x[-1] != self._last[0]):
            ys.append(self._last[1][i])
        return ys

    @property
    def last(self) -> dict[str, float] | None:
        if self._last is None:
            return None
        return dict(zip(self.names, self._last[1]))
