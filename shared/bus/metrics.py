"""Consumer metrics: batch sizes and lag per partition, for a service's ``/metrics``.

``cadencia_consumer_batch_size{consumer}`` is a histogram of the records one ``getmany`` returned;
``cadencia_consumer_lag{consumer, topic, partition}`` is the partition's high watermark (as of the
last fetch) minus the next offset this consumer will handle, computed at scrape time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from aiokafka import TopicPartition
from prometheus_client import Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000)


class ConsumerMetrics(Collector):
    def __init__(self, name: str, consumer: Any) -> None:
        self.name, self._consumer = name, consumer
        # Not registered anywhere: yielded by this collector, on whichever registry registers it.
        self._batches = Histogram("cadencia_consumer_batch_size", "Records per fetched batch", ["consumer"],
                                  registry=None, buckets=BATCH_BUCKETS)
        self._next: dict[TopicPartition, int] = {}

    def batch(self, batches: Mapping[TopicPartition, Sequence[Any]]) -> None:
        """Called with each non-empty ``getmany`` result."""
        self._batches.labels(self.name).observe(sum(len(records) for records in batches.values()))
        for tp, records in batches.items():
            if records:
                self._next[tp] = int(records[-1].offset) + 1

    def collect(self) -> Iterator[Metric]:
        yield from self._batches.collect()
        lag = GaugeMetricFamily("cadencia_consumer_lag", "Records behind the partition's high watermark",
                                labels=["consumer", "topic", "partition"])
        for tp in sorted(self._consumer.assignment(), key=lambda t: (t.topic, t.partition)):
            high = self._consumer.highwater(tp)
            if high is None:
                continue
            lag.add_metric([self.name, tp.topic, str(tp.partition)], max(0, high - self._next.get(tp, high)))
        yield lag
