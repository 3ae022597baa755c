//! The parent's side of the workers: starts them (as tasks or as child processes), collects
//! their reports and adds them up.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::util::new_histogram;
use crate::worker::{run_worker, Counts, FromWorker, ToWorker, WorkerResult, WorkerSpec};

/// A message from worker `.0`; `None`: the worker is gone.
type Inbox = mpsc::Receiver<(usize, Option<FromWorker>)>;

/// Running workers.
#[derive(Debug)]
pub(crate) struct Fleet {
    senders: Vec<mpsc::Sender<ToWorker>>,
    inbox: Inbox,
    children: Vec<Child>,
    progress: Vec<Counts>,
}

/// All workers connected (or gave up).
#[derive(Debug, Clone, Default)]
pub(crate) struct ReadyTotals {
    pub(crate) counts: Counts,
    pub(crate) failures: BTreeMap<String, u64>,
    pub(crate) start_us: u64,
    pub(crate) end_us: u64,
    /// Workers that did not answer in time.
    pub(crate) missing: usize,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct DrainTotals {
    pub(crate) counts: Counts,
    pub(crate) complete: bool,
    pub(crate) last_rx_us: u64,
    pub(crate) missing: usize,
}

/// Every worker's books added up.
#[derive(Debug, Clone)]
pub(crate) struct Totals {
    pub(crate) r: WorkerResult,
    pub(crate) latency: Histogram<u64>,
    /// Complete subscribers whose arrival order differs from the most common one.
    pub(crate) order_divergent: u64,
    pub(crate) missing: usize,
}

impl Fleet {
    /// Starts one worker per spec: in this process when `in_process`, else as child processes
    /// of this binary with `threads` runtime threads each.
    pub(crate) async fn start(
        specs: Vec<WorkerSpec>,
        in_process: bool,
        threads: usize,
    ) -> anyhow::Result<Fleet> {
        let (inbox_tx, inbox) = mpsc::channel(1024);
        let mut senders = Vec::new();
        let mut children = Vec::new();
        let n = specs.len();
        for (i, spec) in specs.into_iter().enumerate() {
            let (to_tx, to_rx) = mpsc::channel::<ToWorker>(16);
            if in_process {
                let (from_tx, mut from_rx) = mpsc::channel(256);
                tokio::spawn(run_worker(to_rx, from_tx));
                let inbox_tx = inbox_tx.clone();
                tokio::spawn(async move {
                    while let Some(msg) = from_rx.recv().await {
                        if inbox_tx.send((i, Some(msg))).await.is_err() {
                            return;
                        }
                    }
                    let _ = inbox_tx.send((i, None)).await;
                });
            } else {
                let exe = std::env::current_exe().context("cannot find this executable")?;
                let mut child = tokio::process::Command::new(exe)
                    .arg("worker")
                    .arg("--threads")
                    .arg(threads.to_string())
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .kill_on_drop(true)
                    .spawn()
                    .context("cannot start a worker process")?;
                let mut stdin = child.stdin.take().context("worker stdin")?;
                let stdout = child.stdout.take().context("worker stdout")?;
                let mut to_rx = to_rx;
                tokio::spawn(async move {
                    while let Some(cmd) = to_rx.recv().await {
                        let mut line = serde_json::to_vec(&cmd).expect("commands serialize");
                        line.push(b'\n');
                        if stdin.write_all(&line).await.is_err() || stdin.flush().await.is_err() {
                            return;
                        }
                    }
                    // Dropping stdin tells the worker to stop.
                });
                let inbox_tx = inbox_tx.clone();
                tokio::spawn(async move {
                    let mut lines = BufReader::new(stdout).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let msg = serde_json::from_str::<FromWorker>(&line).unwrap_or_else(|e| {
                            FromWorker::Error {
                                message: format!("worker {i} sent {line:?}: {e}"),
                            }
                        });
                        if inbox_tx.send((i, Some(msg))).await.is_err() {
                            return;
                        }
                    }
                    let _ = inbox_tx.send((i, None)).await;
                });
                children.push(child);
            }
            to_tx
                .send(ToWorker::Start {
                    spec: Box::new(spec),
                })
                .await
                .context("worker did not start")?;
            senders.push(to_tx);
        }
        Ok(Fleet {
            senders,
            inbox,
            children,
            progress: vec![Counts::default(); n],
        })
    }

    /// Process ids of the worker processes (none for in-process workers).
    pub(crate) fn child_pids(&self) -> Vec<u32> {
        self.children.iter().filter_map(Child::id).collect()
    }

    /// Progress summed over workers.
    pub(crate) fn progress(&self) -> Counts {
        let mut c = Counts::default();
        for p in &self.progress {
            c.add(p);
        }
        c
    }

    /// The next report, handling progress along the way; `None` at the deadline.
    async fn next(
        &mut self,
        deadline: Instant,
        bar: &ProgressBar,
        show: fn(&Counts) -> u64,
    ) -> anyhow::Result<Option<(usize, FromWorker)>> {
        loop {
            let got = tokio::select! {
                got = self.inbox.recv() => got,
                _ = tokio::time::sleep_until(deadline) => return Ok(None),
            };
            match got {
                None => bail!("every worker is gone"),
                Some((i, None)) => bail!("worker {i} exited unexpectedly"),
                Some((i, Some(FromWorker::Error { message }))) => bail!("worker {i}: {message}"),
                Some((i, Some(FromWorker::Progress(c)))) => {
                    self.progress[i] = c;
                    bar.set_position(show(&self.progress()));
                }
                Some((i, Some(msg))) => return Ok(Some((i, msg))),
            }
        }
    }

    /// Waits until every worker has resolved its connection attempts, or `deadline`.
    pub(crate) async fn wait_ready(
        &mut self,
        deadline: Instant,
        bar: &ProgressBar,
    ) -> anyhow::Result<ReadyTotals> {
        let mut t = ReadyTotals {
            start_us: u64::MAX,
            ..ReadyTotals::default()
        };
        let mut pending = vec![true; self.senders.len()];
        while pending.iter().any(|&p| p) {
            let Some((i, msg)) = self.next(deadline, bar, |c| c.connected + c.failed).await? else {
                break;
            };
            if let FromWorker::Ready {
                counts,
                failures,
                start_us,
                end_us,
            } = msg
            {
                pending[i] = false;
                self.progress[i] = counts;
                t.counts.add(&counts);
                for (k, v) in failures {
                    *t.failures.entry(k).or_default() += v;
                }
                t.start_us = t.start_us.min(start_us);
                t.end_us = t.end_us.max(end_us);
                bar.set_position(self.progress().connected + self.progress().failed);
            }
        }
        t.missing = pending.iter().filter(|&&p| p).count();
        for (i, p) in pending.iter().enumerate() {
            if *p {
                // Count what it had reported.
                t.counts.add(&self.progress[i]);
            }
        }
        if t.start_us == u64::MAX {
            t.start_us = 0;
        }
        Ok(t)
    }

    /// Tells workers publishing is over and waits for their subscribers to catch up.
    pub(crate) async fn drain(
        &mut self,
        issued: u64,
        failed: &[u64],
        timeout: Duration,
        bar: &ProgressBar,
    ) -> anyhow::Result<DrainTotals> {
        for s in &self.senders {
            s.send(ToWorker::Drain {
                issued,
                failed: failed.to_vec(),
                timeout_ms: timeout.as_millis() as u64,
            })
            .await
            .ok();
        }
        // The workers enforce the timeout; allow them a little longer to answer.
        let deadline = Instant::now() + timeout + Duration::from_secs(5);
        let mut t = DrainTotals {
            complete: true,
            ..DrainTotals::default()
        };
        let mut pending = vec![true; self.senders.len()];
        while pending.iter().any(|&p| p) {
            let Some((i, msg)) = self.next(deadline, bar, |c| c.received).await? else {
                break;
            };
            if let FromWorker::Drained {
                counts,
                complete,
                last_rx_us,
            } = msg
            {
                pending[i] = false;
                self.progress[i] = counts;
                t.counts.add(&counts);
                t.complete &= complete;
                t.last_rx_us = t.last_rx_us.max(last_rx_us);
            }
        }
        t.missing = pending.iter().filter(|&&p| p).count();
        t.complete &= t.missing == 0;
        Ok(t)
    }

    /// Stops every worker and adds up their books.
    pub(crate) async fn finish(mut self, timeout: Duration) -> anyhow::Result<Totals> {
        for s in &self.senders {
            s.send(ToWorker::Finish).await.ok();
        }
        let deadline = Instant::now() + timeout;
        let mut r = WorkerResult::default();
        let mut latency = new_histogram();
        let mut hashes: BTreeMap<u64, u64> = BTreeMap::new();
        let mut pending = vec![true; self.senders.len()];
        let hidden = ProgressBar::hidden();
        while pending.iter().any(|&p| p) {
            let Some((i, msg)) = self.next(deadline, &hidden, |_| 0).await? else {
                break;
            };
            if let FromWorker::Result(w) = msg {
                pending[i] = false;
                add_result(&mut r, &w);
                r.first_rx_us = match (r.first_rx_us, w.first_rx_us) {
                    (0, b) => b,
                    (a, 0) => a,
                    (a, b) => a.min(b),
                };
                for &(v, n) in &w.latency {
                    latency.saturating_record_n(v, n);
                }
                for &(h, n) in &w.order_hashes {
                    *hashes.entry(h).or_default() += n;
                }
            }
        }
        let complete_subs: u64 = hashes.values().sum();
        let majority = hashes.values().copied().max().unwrap_or(0);
        r.order_hashes = hashes.into_iter().collect();
        let missing = pending.iter().filter(|&&p| p).count();
        drop(self.senders);
        for child in &mut self.children {
            if tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .is_err()
            {
                let _ = child.start_kill();
            }
        }
        Ok(Totals {
            r,
            latency,
            order_divergent: complete_subs - majority,
            missing,
        })
    }
}

fn add_result(r: &mut WorkerResult, w: &WorkerResult) {
    r.connected += w.connected;
    r.received += w.received;
    r.unique += w.unique;
    r.expected += w.expected;
    r.lost += w.lost;
    r.duplicates += w.duplicates;
    r.out_of_order += w.out_of_order;
    r.misdirected += w.misdirected;
    r.id_regressions += w.id_regressions;
    r.unconfirmed += w.unconfirmed;
    r.other_events += w.other_events;
    r.subscribers_with_loss += w.subscribers_with_loss;
    r.subscribers_ended_early += w.subscribers_ended_early;
    for (k, v) in &w.end_reasons {
        *r.end_reasons.entry(k.clone()).or_default() += v;
    }
    r.last_rx_us = r.last_rx_us.max(w.last_rx_us);
}
