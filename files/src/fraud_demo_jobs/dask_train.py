"""The Dask backend of the train stage (``fraud-demo-train --backend dask``): the same split, feature state and
LightGBM parameters as the local backend, with the wide work done on the cluster's workers.

What runs where:

- the workers read the curated Parquet (``train_transaction`` and ``train_identity`` of the version the job
  resolved, the objects its manifest names) straight from S3 with s3fs, a partition per task, and join the
  identity rows (one partition, broadcast to every transaction partition: no shuffle);
- the client (the job, on the node) collects a narrow projection (the columns the feature state is fitted on: time,
  keys, the aggregated values, frequency and text columns) and the holdout; it splits them with
  ``features.time_split`` (the same edges and bounds as the local backend) and fits the ``FeatureState`` on the
  train window exactly as the local backend does (the key aggregates need the whole window in time order);
- the state goes to the workers once; each computes the feature block of its own partitions
  (``FeatureState.transform``) and the recency weights;
- ``lightgbm.dask.DaskLGBMClassifier`` trains on them (data-parallel, LightGBM's own sockets between the workers)
  with the local backend's parameters, for ``--max-rounds`` rounds: LightGBM's Dask interface has no early
  stopping, and its validation metric would be one worker's share of the validation rows. So the client scores
  the whole validation slice tree by tree and cuts the booster at the best round by the local rule (the first
  metric, AUC; stop after ``--early-stopping-rounds`` rounds without a gain); ``to_local()`` gives the plain
  Booster that is evaluated, logged, registered and gated exactly as a local one (``train_run``).

A worker lost during the fit fails the run (``dask_cluster.WorkerWatch``): the MLflow run ends FAILED, nothing is
registered, and the next run trains again.
"""

from __future__ import annotations

import base64
import threading
import time

import numpy as np
import pandas as pd

from . import dask_cluster as DC
from . import features as F
from . import ieee_contract as C
from . import modeling as M
from .aws import S3Bucket
from .curated_read import CuratedVersion
from .errors import JobError
from .telemetry import EventLog
from .train import TRAINING_TABLES, TrainRunState, TrainSettings

CONNECT_TIMEOUT = 30.0
# The columns FeatureState.fit reads besides the text and frequency columns (the key parts and the aggregated
# values); the equality test with the local backend's state guards this list.
FIT_COLUMNS = (F.DT, C.KEY, C.LABEL, "TransactionAmt", "card1", "addr1", "D1", *F.AGG_VALUES, *F.FREQUENCY_COLUMNS)
_TRANSFORM_LOCK = threading.Lock()
PARTITIONS_PER_WORKER = 2  # at least this many training partitions per worker, so each one holds some


class DaskTraining:
    """One training on the cluster: ``with DaskTraining(...) as b: b.split(); b.fit()`` (train_run drives it)."""

    def __init__(self, s: TrainSettings, st: TrainRunState, bucket: S3Bucket, cv: CuratedVersion, events: EventLog):
        self.s, self.st, self.bucket, self.cv, self.events = s, st, bucket, cv, events
        self.d = s.dask
        self.client = None
        self.workers: dict[str, str] = {}
        self.frame = None  # the joined Dask frame
        self._futures: list = []  # its partitions, as held by the workers
        self.parts: F.TimeSplit | None = None  # narrow train/valid, full holdout (pandas, on the client)
        self.meta_state: F.FeatureState | None = None

    # ---- the cluster ----

    def __enter__(self) -> DaskTraining:
        d = self.d
        self.client = DC.connect(d.scheduler, d.tls_ca, d.tls_cert, d.tls_key, CONNECT_TIMEOUT)
        self.st.dask = {"scheduler": d.scheduler, "workers": [], "client_peak_rss_mb": None, "partitions": None}
        self.st.dask["rows_per_worker"] = None
        try:
            self.workers = DC.wait_for_expected_workers(self.client, d.workers, d.wait_seconds)
        except BaseException:
            self.client.close()
            raise
        self.st.dask["workers"] = [{"name": n, "address": a, "peak_rss_mb": None} for a, n in self.workers.items()]
        self.events("dask_connected", scheduler=d.scheduler, workers=sorted(self.workers.values()))
        return self

    def __exit__(self, *exc) -> None:
        self.st.dask["client_peak_rss_mb"] = DC.client_peak_rss_mb()
        if self.client.status == "running":
            self.st.dask["workers"] = DC.peak_rss(self.client, self.workers)
            self.client.close()
        self.frame = self.parts = None
        self._futures = []

    # ---- data ----

    def split(self) -> dict:
        try:
            return self._split()
        except OSError as e:  # s3fs's, from the workers: an S3 error left after its retries, access denied, ...
            raise JobError(
                f"the Dask workers could not read curated version {self.cv.version} from s3://{self.s.bucket}/ "
                f"({DC.first_line(str(e))}); check that the workers reach S3 (their instance profile, the endpoint) "
                "and run the job again"
            ) from e

    def _split(self) -> dict:
        import dask

        with dask.config.set({"dataframe.convert-string": False}):  # object strings, as pandas.read_parquet gives
            tx, ident = (self._read_table(name) for name in TRAINING_TABLES)
        ident = ident.drop(columns=[c for c in ident.columns if c in tx.columns and c != C.KEY])
        # One identity partition: a broadcast join that keeps the transactions' partitions (and their order).
        frame = tx.merge(ident.repartition(npartitions=1), on=C.KEY, how="left")
        wanted = PARTITIONS_PER_WORKER * len(self.workers)
        frame = frame.repartition(npartitions=wanted) if frame.npartitions < wanted else frame
        self.frame = self._deal(frame)  # read from S3 once, held by the workers (a share each)
        self.meta_state = F.FeatureState.fit(self.frame._meta)  # column lists only (no rows)
        cols = [c for c in self.frame.columns if c in set(FIT_COLUMNS) | set(self.meta_state.categories)]
        narrow = _in_time_order(self._get(self.frame[cols]))
        self._check_rows(narrow, ident)
        parts = F.time_split(narrow, self.s.split)
        holdout = self._get(self.frame[self.frame[F.DT] > parts.edges["holdout_start"]])
        parts.holdout = _in_time_order(holdout)
        self.parts = parts
        self.st.dask["partitions"] = int(self.frame.npartitions)
        self.st.dask["rows_per_worker"] = self._rows_per_worker()
        return parts.bounds()

    def _deal(self, frame):
        """``frame`` computed and held with partition i on worker i mod n (by address): each worker reads and
        keeps its share. Left to the scheduler, a table read as one partition and split afterwards stayed on one
        worker (at full scale 9.4 GiB there against 0.6 GiB on the other), and LightGBM trained on that one alone.
        A preference, not a rule: a partition whose worker is gone is read by another."""
        import dask
        import dask.dataframe as dd
        from distributed import wait

        addresses = sorted(self.workers)
        futures = [
            self.client.compute(part, workers=[addresses[i % len(addresses)]], allow_other_workers=True)
            for i, part in enumerate(frame.to_delayed())
        ]
        with self.client.as_current():  # wait() looks for the default client
            wait(futures)
        self._futures = futures
        with dask.config.set({"dataframe.convert-string": False}):  # as read: object strings
            return dd.from_delayed(futures, meta=frame._meta, divisions=frame.divisions, verify_meta=False)

    def _rows_per_worker(self) -> dict[str, int]:
        """Worker name → rows of the curated table it holds (where the scheduler says each partition is)."""
        rows = self._get(self.frame.map_partitions(len))
        who = self.client.who_has(self._futures)
        held = dict.fromkeys(sorted(self.workers.values()), 0)
        for future, n in zip(self._futures, rows, strict=True):
            for address in who.get(future.key, ()):
                name = self.workers.get(address, address)
                held[name] = held.get(name, 0) + int(n)
        return held

    def _get(self, *collections):
        """Compute on the cluster (the client is not Dask's default scheduler); the results on the client."""
        out = self.client.gather(self.client.compute(list(collections)))
        return out[0] if len(collections) == 1 else out

    def _read_table(self, name: str):
        import dask.dataframe as dd

        entry = self.cv.table(name)
        head = self._checked_object(entry)
        options = {"client_kwargs": {"endpoint_url": self.s.endpoint_url, "region_name": self.s.region}}
        options |= {"version_aware": True}
        path = f"s3://{self.s.bucket}/{entry['key']}"
        if head.get("VersionId") and head["VersionId"] != "null":
            path += f"?versionId={head['VersionId']}"
        # A partition per row group (ingest writes them ~15,000 rows each): the workers read the file in parallel,
        # each its share; by default Dask reads a file this size as one partition.
        return dd.read_parquet(path, storage_options=options, split_row_groups=True)

    def _checked_object(self, entry: dict) -> dict:
        """The object's HeadObject, checked against the manifest: its size, and its SHA-256 when S3 has one for
        the whole object (a single-part upload); the workers then read that very version."""
        head = self.bucket.head(entry["key"]) or {}
        checksum = head.get("ChecksumSHA256") or ""
        # A multipart object's checksum is of its parts, not of the file (the sandbox's emulator leaves out
        # AWS's "-N" suffix): only a single-part object's is compared with the manifest's sha256.
        multipart = "-" in (head.get("ETag") or "") or head.get("ChecksumType") == "COMPOSITE" or "-" in checksum
        same_sha = multipart or not checksum or base64.b64decode(checksum).hex() == entry["sha256"]
        if head.get("ContentLength") != int(entry["bytes"]) or not same_sha:
            raise JobError(
                f"s3://{self.s.bucket}/{entry['key']} does not match its manifest (size or sha256): the curated "
                f"version {self.cv.version} was changed after it was written; re-create it with the ingest stage"
            )
        return head

    def _check_rows(self, narrow: pd.DataFrame, ident) -> None:
        expected = {n: self.cv.table(n).get("rows_valid") for n in TRAINING_TABLES}
        got = {"train_transaction": len(narrow), "train_identity": int(self._get(ident.shape[0]))}
        for name, rows in got.items():
            if expected[name] is not None and rows != expected[name]:
                raise JobError(
                    f"{name} of curated version {self.cv.version} has {rows} rows, its manifest says "
                    f"{expected[name]}: re-create the version with the ingest stage"
                )

    # ---- training ----

    def fit(self):
        from .train_run import Fitted

        s, st, parts = self.s, self.st, self.parts
        t = time.monotonic()
        state = self.fit_state()
        X_train, y_train, w_train, X_valid, y_valid = self._features(state, parts.edges)
        X_hold = state.transform(parts.holdout)
        st.phase_seconds["features"] = time.monotonic() - t

        t = time.monotonic()
        self.events("dask_fit_started", partitions=int(X_train.npartitions), rounds=s.params.max_rounds)
        with DC.WorkerWatch(self.client, self.workers) as watch:
            model = DC.run_watched(
                self.client, watch, "training", lambda: self._fit_lgbm(state, X_train, y_train, w_train)
            )
        booster = cut_at_best_round(model.booster_, X_valid, y_valid, s.params.early_stopping_rounds)
        st.phase_seconds["train"] = time.monotonic() - t
        self.events("dask_trained", rounds=model.booster_.current_iteration(), best_iteration=booster.best_iteration)
        return Fitted(state, booster, parts.holdout, X_hold)

    def fit_state(self) -> F.FeatureState:
        """The local backend's fit on the narrow train window (same rows, same order, same columns it reads)."""
        state = F.FeatureState.fit(self.parts.history, lag_days=self.s.split.scoring_lag_days())
        state.raw_numeric = list(self.meta_state.raw_numeric)  # the narrow frame lacks the raw-only columns
        return state

    def _features(self, state: F.FeatureState, edges: dict[str, int]):
        """Train features, labels and weights as persisted Dask collections (computed on the workers); the
        validation slice's features on the client (for the cut)."""
        import dask

        frame, hl = self.frame, self.s.params.half_life_days
        shared = dask.delayed(state, traverse=False)  # one copy in the graph, sent to each worker once
        meta = state.transform(frame._meta)
        train = frame[frame[F.DT] <= edges["valid_start"]]
        valid = frame[(frame[F.DT] > edges["valid_start"]) & (frame[F.DT] <= edges["train_end"])]
        X_train = train.map_partitions(_transform, shared, meta=meta)
        y_train = train[C.LABEL]
        w_train = None
        if hl > 0:
            newest = int(self.parts.train[F.DT].max())
            w_train = train[F.DT].map_partitions(_weights, newest, hl, meta=(F.DT, "f8"))
        X_valid, y_valid = self._get(valid.map_partitions(_transform, shared, meta=meta), valid[C.LABEL])
        X_train, y_train, *w = self.client.persist([X_train, y_train, *([w_train] if w_train is not None else [])])
        # Partitions outside the train window are empty after the filter, and LightGBM refuses an empty part.
        rows = self._get(y_train.map_partitions(len))
        keep = [i for i, n in enumerate(rows) if n > 0]
        X_train, y_train = X_train.partitions[keep], y_train.partitions[keep]
        w = [w[0].partitions[keep]] if w else []
        return X_train, y_train, (w[0] if w else None), X_valid, y_valid.to_numpy()

    def _fit_lgbm(self, state: F.FeatureState, X, y, w):
        from lightgbm.dask import DaskLGBMClassifier

        params = self.s.params.lgb_params()
        params.pop("num_threads")  # each worker uses its own thread count (LightGBM's Dask interface decides)
        params.pop("metric")  # no validation inside LightGBM: see cut_at_best_round
        if self.d.lightgbm_port:
            params["local_listen_port"] = self.d.lightgbm_port
        clf = DaskLGBMClassifier(client=self.client, n_estimators=self.s.params.max_rounds, **params)
        cats = [c for c in state.categorical_features if c in X.columns]
        with self.client.as_current():  # LightGBM waits on its futures through the default client
            clf.fit(X, y, sample_weight=w, categorical_feature=cats or "auto")
        return clf.to_local()


def cut_at_best_round(booster, X_valid: pd.DataFrame, y_valid: np.ndarray, patience: int):
    """The booster cut at its best round on the validation slice, by the rule of LightGBM's early stopping that
    the local backend uses (the first round with the highest AUC, searched until ``patience`` rounds in a row
    bring no gain); ``best_iteration`` set as early stopping sets it."""
    import lightgbm as lgb
    from sklearn.metrics import roc_auc_score

    rounds = booster.current_iteration()
    raw = np.zeros(len(X_valid))
    best, best_round = -np.inf, 0
    for i in range(rounds):
        raw += booster.predict(X_valid, raw_score=True, start_iteration=i, num_iteration=1)
        auc = roc_auc_score(y_valid, raw)
        if auc > best:
            best, best_round = auc, i
        elif i - best_round >= patience:
            break
    cut = lgb.Booster(model_str=booster.model_to_string(num_iteration=best_round + 1))
    cut.best_iteration = best_round + 1
    return cut


def _in_time_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows by (TransactionDT, TransactionID), index 0..n-1: the order of the local backend's model frame."""
    return frame.sort_values([F.DT, C.KEY], kind="stable", ignore_index=True)


def _transform(part: pd.DataFrame, state: F.FeatureState) -> pd.DataFrame:
    """A partition's features (on a worker); its index kept so it lines up with the labels. One partition at a
    time per worker process: the worker's threads share one state, whose lookup tables are built lazily (two threads
    building them at once failed with pandas' InvalidIndexError)."""
    with _TRANSFORM_LOCK:
        out = state.transform(part)
    out.index = part.index
    return out


def _weights(dt: pd.Series, newest: int, half_life_days: float) -> pd.Series:
    return pd.Series(M.recency_weights(dt.to_numpy(), half_life_days, newest=newest), index=dt.index)
