//! One inference thread per device: builds its model on that thread once, then serves any
//! number of sessions (one per slide, say): each session sends [`PatchBatch`]es through a
//! [`BatchSender`] and receives its [`HeadOutputs`] (or a batch's error), in order, on a receiver
//! of its own that ends when the session's senders are gone and its batches are done.

use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};

use mtseg_types::HeadSpec;

use crate::errors::{InferError, LoadError};
use crate::heads::{HeadOutputs, PendingOutputs};
use mtseg_types::PatchBatch;

use crate::model::{BatchView, Model};

/// The result of one batch.
pub type BatchResult = Result<HeadOutputs, InferError>;

/// One batch and where its result goes.
#[derive(Debug)]
struct Job {
    batch: PatchBatch,
    reply: Sender<BatchResult>,
}

/// Sends the batches of one session to the inference thread (clone it for several producers).
/// The session's results come back, in sending order, on the receiver that
/// [`InferenceThread::session`] returned with it.
#[derive(Debug, Clone)]
pub struct BatchSender {
    jobs: Sender<Job>,
    reply: Sender<BatchResult>,
}

impl BatchSender {
    /// Queues one batch (blocks while the thread's queue is full).
    ///
    /// # Errors
    /// [`InferError::ThreadGone`] when the thread has stopped.
    pub fn send(&self, batch: PatchBatch) -> Result<(), InferError> {
        let job = Job {
            batch,
            reply: self.reply.clone(),
        };
        self.jobs.send(job).map_err(|_| InferError::ThreadGone {
            detail: "the thread has stopped".into(),
        })
    }
}

/// A running inference thread and its model.
///
/// The queue of batches and each session's queue of results are bounded by `capacity`, so a slow
/// consumer of results stalls the thread, and a slow thread stalls the producers. A session whose
/// receiver is dropped loses its remaining results; the thread goes on with the other sessions.
/// Dropping the handle (or [`InferenceThread::join`]) ends the thread once the queued batches are
/// done; every session's receiver must be consumed or dropped by then.
#[derive(Debug)]
pub struct InferenceThread {
    jobs: Option<Sender<Job>>,
    default: Option<BatchSender>,
    output: Receiver<BatchResult>,
    capacity: usize,
    heads: Vec<HeadSpec>,
    input_size: usize,
    output_size: usize,
    handle: Option<JoinHandle<()>>,
}

impl InferenceThread {
    /// Starts a thread named `name`, builds the model there with `make_model` and waits until it is
    /// loaded. `capacity` (≥ 1) bounds the channels.
    ///
    /// # Errors
    /// The model's [`LoadError`]; [`LoadError::Thread`] if the thread could not start or died.
    pub fn spawn<F>(name: &str, capacity: usize, make_model: F) -> Result<Self, LoadError>
    where
        F: FnOnce() -> Result<Box<dyn Model>, LoadError> + Send + 'static,
    {
        let capacity = capacity.max(1);
        let (jobs_tx, jobs_rx) = bounded::<Job>(capacity);
        let (ready_tx, ready_rx) = bounded(1);
        let handle = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn({
                let name = name.to_owned();
                move || run(make_model, &ready_tx, &jobs_rx, &name, capacity)
            })
            .map_err(|e| LoadError::Thread {
                detail: e.to_string(),
            })?;
        match ready_rx.recv() {
            Ok(Ok((heads, input_size, output_size))) => {
                let (reply, output) = bounded(capacity);
                Ok(Self {
                    default: Some(BatchSender {
                        jobs: jobs_tx.clone(),
                        reply,
                    }),
                    jobs: Some(jobs_tx),
                    output,
                    capacity,
                    heads,
                    input_size,
                    output_size,
                    handle: Some(handle),
                })
            }
            Ok(Err(e)) => {
                let _ = handle.join();
                Err(e)
            }
            Err(_) => {
                let detail = match handle.join() {
                    Err(p) => format!("it panicked: {}", panic_message(p.as_ref())),
                    Ok(()) => "it ended without reporting".to_owned(),
                };
                Err(LoadError::Thread { detail })
            }
        }
    }

    /// The model's heads.
    #[must_use]
    pub fn heads(&self) -> &[HeadSpec] {
        &self.heads
    }

    /// The model's input patch side.
    #[must_use]
    pub fn input_size(&self) -> usize {
        self.input_size
    }

    /// The model's output side.
    #[must_use]
    pub fn output_size(&self) -> usize {
        self.output_size
    }

    /// A new session: a sender for its batches and the receiver of their results, one per batch
    /// in sending order. The receiver ends when every clone of the sender is dropped and the
    /// session's queued batches are done.
    ///
    /// # Errors
    /// [`InferError::ThreadGone`] after [`InferenceThread::close`].
    pub fn session(&self) -> Result<(BatchSender, Receiver<BatchResult>), InferError> {
        let jobs = self.jobs.clone().ok_or_else(|| InferError::ThreadGone {
            detail: "input closed".into(),
        })?;
        let (reply, results) = bounded(self.capacity);
        Ok((BatchSender { jobs, reply }, results))
    }

    /// Sends one batch of the default session (blocks while the queue is full); its result
    /// comes from [`InferenceThread::recv`].
    ///
    /// # Errors
    /// [`InferError::ThreadGone`] when the thread has stopped or was closed.
    pub fn submit(&self, batch: PatchBatch) -> Result<(), InferError> {
        self.default
            .as_ref()
            .ok_or_else(|| InferError::ThreadGone {
                detail: "input closed".into(),
            })?
            .send(batch)
    }

    /// Waits for the next result of the default session.
    ///
    /// # Errors
    /// The batch's error, or [`InferError::ThreadGone`] when no more results will come.
    pub fn recv(&self) -> Result<HeadOutputs, InferError> {
        self.output.recv().map_err(|_| InferError::ThreadGone {
            detail: "no more results".into(),
        })?
    }

    /// Closes the input: no new session or batch; the thread ends after the queued batches
    /// once the open sessions' senders are gone.
    pub fn close(&mut self) {
        self.jobs = None;
        self.default = None;
    }

    /// Closes the input, drains the default session's remaining results and joins the thread.
    ///
    /// # Errors
    /// [`InferError::ThreadGone`] if the thread panicked.
    pub fn join(mut self) -> Result<Vec<BatchResult>, InferError> {
        self.close();
        let rest: Vec<_> = self.output.iter().collect();
        match self.handle.take().map(JoinHandle::join) {
            Some(Err(p)) => Err(InferError::ThreadGone {
                detail: format!("panicked: {}", panic_message(p.as_ref())),
            }),
            _ => Ok(rest),
        }
    }
}

impl Drop for InferenceThread {
    fn drop(&mut self) {
        self.close();
        // Unblock a thread waiting to send: drain, then join.
        while self.output.recv().is_ok() {}
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

type Ready = Result<(Vec<HeadSpec>, usize, usize), LoadError>;

/// A forward's result on its way to the transform thread.
struct Transform {
    pending: Result<PendingOutputs, InferError>,
    indices: Vec<u64>,
    reply: Sender<BatchResult>,
}

/// The thread's body: builds the model, then runs the forwards one after the other and hands
/// each result to a second thread, `<name>-heads`, which does the per-pixel head transform
/// ([`PendingOutputs::finish`]), checks the outputs against the batch and replies. The two
/// queues keep the sending order. (Without that thread the transform runs here.)
fn run<F>(make_model: F, ready: &Sender<Ready>, jobs: &Receiver<Job>, name: &str, capacity: usize)
where
    F: FnOnce() -> Result<Box<dyn Model>, LoadError>,
{
    let mut model = match make_model() {
        Ok(m) => m,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let (heads, output_size) = (model.heads().to_vec(), model.output_size());
    if ready
        .send(Ok((heads.clone(), model.input_size(), output_size)))
        .is_err()
    {
        return;
    }
    let finish = |t: Transform| {
        let result = t.pending.and_then(|p| {
            let out = p.finish();
            out.check(&heads, &t.indices, output_size).map(|()| out)
        });
        // A session that hung up loses its result; the others go on.
        let _ = t.reply.send(result);
    };
    std::thread::scope(|s| {
        let (to_heads, heads_rx) = bounded::<Transform>(capacity);
        let transformer = std::thread::Builder::new()
            .name(format!("{name}-heads"))
            .spawn_scoped(s, move || heads_rx.into_iter().for_each(finish));
        let mut to_heads = match transformer {
            Ok(_) => Some(to_heads),
            Err(e) => {
                tracing::warn!(error = %e, "no head transform thread: transforming on the model's thread");
                None
            }
        };
        for job in jobs {
            let t0 = std::time::Instant::now();
            let pending = BatchView::of(&job.batch).and_then(|v| model.forward_pending(v));
            tracing::debug!(
                patches = job.batch.indices.len(),
                ms = t0.elapsed().as_millis() as u64,
                "batch forward"
            );
            let t = Transform {
                pending,
                indices: job.batch.indices,
                reply: job.reply,
            };
            match &to_heads {
                Some(tx) => {
                    if let Err(e) = tx.send(t) {
                        // the transform thread died (a panic): finish here from now on
                        to_heads = None;
                        finish(e.into_inner());
                    }
                }
                None => finish(t),
            }
        }
    });
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heads::{HeadTensor, PendingOutputs};
    use crate::model::BatchView;
    use mtseg_types::HeadKind;
    use mtseg_types::Size2;

    /// Mean of the red channel as np, for checking plumbing.
    struct Fake(Vec<HeadSpec>);
    impl Model for Fake {
        fn heads(&self) -> &[HeadSpec] {
            &self.0
        }
        fn input_size(&self) -> usize {
            2
        }
        fn output_size(&self) -> usize {
            1
        }
        fn forward(&mut self, b: BatchView<'_>) -> Result<HeadOutputs, InferError> {
            crate::model::check_patch_size(2, &b)?;
            let data = b
                .pixels()
                .chunks(12)
                .map(|p| f32::from(p[0] + p[3] + p[6] + p[9]) / 4.0)
                .collect();
            Ok(HeadOutputs {
                indices: b.indices().to_vec(),
                heads: vec![HeadTensor {
                    kind: HeadKind::Np,
                    shape: [b.len(), 1, 1, 1],
                    data,
                }],
            })
        }
    }

    fn fake() -> Result<Box<dyn Model>, LoadError> {
        Ok(Box::new(Fake(vec![HeadSpec::new(HeadKind::Np, 2)])))
    }

    /// Hands over np logits (2 channels, 1 x 1 px): channel 1 = the red of the first pixel,
    /// channel 0 = 0, and records which thread called it.
    struct Logits(Vec<HeadSpec>, std::sync::mpsc::Sender<String>);
    impl Model for Logits {
        fn heads(&self) -> &[HeadSpec] {
            &self.0
        }
        fn input_size(&self) -> usize {
            1
        }
        fn output_size(&self) -> usize {
            1
        }
        fn forward(&mut self, b: BatchView<'_>) -> Result<HeadOutputs, InferError> {
            self.forward_pending(b).map(PendingOutputs::finish)
        }
        fn forward_pending(&mut self, b: BatchView<'_>) -> Result<PendingOutputs, InferError> {
            let name = std::thread::current().name().unwrap_or("").to_owned();
            let _ = self.1.send(name);
            let n = b.len();
            let mut logits = vec![0f32; 2 * n];
            for (i, p) in b.pixels().chunks(3).enumerate() {
                logits[2 * i + 1] = f32::from(p[0]);
            }
            Ok(PendingOutputs::new(
                b.indices().to_vec(),
                vec![crate::heads::PendingHead::Logits {
                    kind: HeadKind::Np,
                    nchw: [n, 2, 1, 1],
                    logits,
                }],
            ))
        }
    }

    /// The forward's logits are turned into head values (and checked) after the forward, in
    /// sending order, and the forwards run on the model's thread.
    #[test]
    fn pending_outputs_are_finished_in_order() {
        let (names_tx, names) = std::sync::mpsc::channel();
        let t = InferenceThread::spawn("infer-pending", 2, move || {
            Ok(Box::new(Logits(vec![HeadSpec::new(HeadKind::Np, 2)], names_tx)) as Box<dyn Model>)
        })
        .unwrap();
        let (tx, rx) = t.session().unwrap();
        let producer = std::thread::spawn(move || {
            for i in 0..20u8 {
                let batch = PatchBatch {
                    indices: vec![u64::from(i), 100 + u64::from(i)],
                    boxes: Vec::new(),
                    patch: Size2::new(1, 1),
                    pixels: vec![i % 3, 0, 0, 0, 0, 0],
                };
                tx.send(batch).unwrap();
            }
        });
        for i in 0..20u8 {
            let out = rx.recv().unwrap().unwrap();
            assert_eq!(out.indices, [u64::from(i), 100 + u64::from(i)]);
            assert_eq!(out.heads[0].shape, [2, 1, 1, 1]);
            // softmax([0, x])[1] = 1 / (1 + e^-x); x = 0 gives exactly 0.5
            let x = f32::from(i % 3);
            let want = 1.0 / (1.0 + (-x).exp());
            assert!(
                (out.heads[0].data[0] - want).abs() < 1e-6,
                "{i}: {:?}",
                out.heads[0].data
            );
            assert_eq!(out.heads[0].data[1], 0.5);
        }
        producer.join().unwrap();
        drop(t);
        let names: Vec<String> = names.iter().collect();
        assert_eq!(names.len(), 20);
        assert!(names.iter().all(|n| n == "infer-pending"), "{names:?}");
    }

    #[test]
    fn runs_batches_in_order() {
        let t = InferenceThread::spawn("infer-test", 1, fake).unwrap();
        assert_eq!(
            (t.input_size(), t.output_size(), t.heads().len()),
            (2, 1, 1)
        );
        let (tx, rx) = t.session().unwrap();
        let producer = std::thread::spawn(move || {
            for i in 0..5u8 {
                let batch = PatchBatch {
                    indices: vec![u64::from(i)],
                    boxes: Vec::new(),
                    patch: Size2::new(2, 2),
                    pixels: vec![i; 12],
                };
                tx.send(batch).unwrap();
            }
        });
        for i in 0..5u8 {
            let out = rx.recv().unwrap().unwrap();
            assert_eq!(out.indices, [u64::from(i)]);
            assert_eq!(out.heads[0].data, [f32::from(i)]);
        }
        producer.join().unwrap();
        // the session ends when its sender is gone and its batches are done
        assert!(rx.recv().is_err());
        // Wrong patch size is an error for that batch only.
        t.submit(PatchBatch {
            indices: vec![9],
            boxes: Vec::new(),
            patch: Size2::new(3, 3),
            pixels: vec![0; 27],
        })
        .unwrap();
        assert!(matches!(t.recv(), Err(InferError::WrongPatchSize { .. })));
        t.submit(PatchBatch {
            indices: vec![9],
            boxes: Vec::new(),
            patch: Size2::new(2, 2),
            pixels: vec![0; 5],
        })
        .unwrap();
        assert!(matches!(t.recv(), Err(InferError::BadBufferLength { .. })));
        assert!(t.join().unwrap().is_empty());
    }

    #[test]
    fn sessions_get_their_own_results_and_one_hanging_up_stops_nothing() {
        let t = InferenceThread::spawn("infer-test", 1, fake).unwrap();
        let batch = |i: u8| PatchBatch {
            indices: vec![u64::from(i)],
            boxes: Vec::new(),
            patch: Size2::new(2, 2),
            pixels: vec![i; 12],
        };
        for round in 0..3u8 {
            let (a_tx, a_rx) = t.session().unwrap();
            let (b_tx, b_rx) = t.session().unwrap();
            a_tx.send(batch(round)).unwrap();
            b_tx.send(batch(round + 10)).unwrap();
            drop(b_tx);
            assert_eq!(a_rx.recv().unwrap().unwrap().indices, [u64::from(round)]);
            assert_eq!(
                b_rx.recv().unwrap().unwrap().indices,
                [u64::from(round) + 10]
            );
            assert!(b_rx.recv().is_err(), "session b ended");
            // a session that hangs up with a batch in flight does not stop the thread
            a_tx.send(batch(50)).unwrap();
            drop(a_rx);
            drop(a_tx);
        }
        let (tx, rx) = t.session().unwrap();
        tx.send(batch(7)).unwrap();
        assert_eq!(rx.recv().unwrap().unwrap().heads[0].data, [7.0]);
        drop(tx);
        assert!(t.join().unwrap().is_empty());
    }

    #[test]
    fn load_error_comes_back() {
        let e = InferenceThread::spawn("infer-test", 1, || {
            Err(LoadError::Thread {
                detail: "nope".into(),
            })
        });
        assert!(e.unwrap_err().to_string().contains("nope"));
        let p = InferenceThread::spawn("infer-test", 1, || panic!("boom"));
        assert!(p.unwrap_err().to_string().contains("boom"));
    }
}
