//! One inference thread per device: builds its model on that thread, takes [`InputBatch`]es from a
//! bounded channel and sends [`HeadOutputs`] (or the batch's error) down another, in order.

use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};

use mtseg_types::HeadSpec;

use crate::errors::{InferError, LoadError};
use crate::heads::HeadOutputs;
use crate::model::{InputBatch, Model};

/// A running inference thread.
///
/// Dropping the [`Sender`] side (via [`InferenceThread::close`] or dropping the thread handle) ends
/// the thread once the queued batches are done. Both channels are bounded by `capacity`, so a slow
/// consumer of results stalls the thread, and a slow thread stalls the producer of batches.
#[derive(Debug)]
pub struct InferenceThread {
    input: Option<Sender<InputBatch>>,
    output: Receiver<Result<HeadOutputs, InferError>>,
    heads: Vec<HeadSpec>,
    input_size: usize,
    output_size: usize,
    handle: Option<JoinHandle<()>>,
}

impl InferenceThread {
    /// Starts a thread named `name`, builds the model there with `make_model` and waits until it is
    /// loaded. `capacity` (≥ 1) bounds both channels.
    ///
    /// # Errors
    /// The model's [`LoadError`]; [`LoadError::Thread`] if the thread could not start or died.
    pub fn spawn<F>(name: &str, capacity: usize, make_model: F) -> Result<Self, LoadError>
    where
        F: FnOnce() -> Result<Box<dyn Model>, LoadError> + Send + 'static,
    {
        let (in_tx, in_rx) = bounded::<InputBatch>(capacity.max(1));
        let (out_tx, out_rx) = bounded(capacity.max(1));
        let (ready_tx, ready_rx) = bounded(1);
        let handle = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || run(make_model, &ready_tx, &in_rx, &out_tx))
            .map_err(|e| LoadError::Thread {
                detail: e.to_string(),
            })?;
        match ready_rx.recv() {
            Ok(Ok((heads, input_size, output_size))) => Ok(Self {
                input: Some(in_tx),
                output: out_rx,
                heads,
                input_size,
                output_size,
                handle: Some(handle),
            }),
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

    /// A sender for batches (clone it for several producers).
    ///
    /// # Errors
    /// [`InferError::ThreadGone`] after [`InferenceThread::close`].
    pub fn sender(&self) -> Result<Sender<InputBatch>, InferError> {
        self.input.clone().ok_or_else(|| InferError::ThreadGone {
            detail: "input closed".into(),
        })
    }

    /// The receiver of results, one per batch, in batch order.
    #[must_use]
    pub fn receiver(&self) -> Receiver<Result<HeadOutputs, InferError>> {
        self.output.clone()
    }

    /// Sends one batch (blocks while the queue is full).
    ///
    /// # Errors
    /// [`InferError::ThreadGone`] when the thread has stopped.
    pub fn submit(&self, batch: InputBatch) -> Result<(), InferError> {
        self.sender()?
            .send(batch)
            .map_err(|_| InferError::ThreadGone {
                detail: "the thread has stopped".into(),
            })
    }

    /// Waits for the next result.
    ///
    /// # Errors
    /// The batch's error, or [`InferError::ThreadGone`] when no more results will come.
    pub fn recv(&self) -> Result<HeadOutputs, InferError> {
        self.output.recv().map_err(|_| InferError::ThreadGone {
            detail: "no more results".into(),
        })?
    }

    /// Closes the input; the thread ends after the queued batches.
    pub fn close(&mut self) {
        self.input = None;
    }

    /// Closes the input, drains the remaining results and joins the thread.
    ///
    /// # Errors
    /// [`InferError::ThreadGone`] if the thread panicked.
    pub fn join(mut self) -> Result<Vec<Result<HeadOutputs, InferError>>, InferError> {
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
        self.input = None;
        // Unblock a thread waiting to send: drain, then join.
        while self.output.recv().is_ok() {}
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

type Ready = Result<(Vec<HeadSpec>, usize, usize), LoadError>;

fn run<F>(
    make_model: F,
    ready: &Sender<Ready>,
    input: &Receiver<InputBatch>,
    output: &Sender<Result<HeadOutputs, InferError>>,
) where
    F: FnOnce() -> Result<Box<dyn Model>, LoadError>,
{
    let mut model = match make_model() {
        Ok(m) => m,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    if ready
        .send(Ok((
            model.heads().to_vec(),
            model.input_size(),
            model.output_size(),
        )))
        .is_err()
    {
        return;
    }
    for batch in input {
        let t0 = std::time::Instant::now();
        let result = batch.view().and_then(|v| model.forward(v));
        tracing::debug!(
            patches = batch.indices.len(),
            ms = t0.elapsed().as_millis() as u64,
            "batch forward"
        );
        if output.send(result).is_err() {
            return;
        }
    }
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
    use crate::heads::HeadTensor;
    use crate::model::BatchView;
    use mtseg_types::HeadKind;

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

    #[test]
    fn runs_batches_in_order() {
        let t = InferenceThread::spawn("infer-test", 1, fake).unwrap();
        assert_eq!(
            (t.input_size(), t.output_size(), t.heads().len()),
            (2, 1, 1)
        );
        let tx = t.sender().unwrap();
        let producer = std::thread::spawn(move || {
            for i in 0..5u8 {
                let batch = InputBatch {
                    indices: vec![u64::from(i)],
                    pixels: vec![i; 12],
                    height: 2,
                    width: 2,
                };
                tx.send(batch).unwrap();
            }
        });
        for i in 0..5u8 {
            let out = t.recv().unwrap();
            assert_eq!(out.indices, [u64::from(i)]);
            assert_eq!(out.heads[0].data, [f32::from(i)]);
        }
        producer.join().unwrap();
        // Wrong patch size is an error for that batch only.
        t.submit(InputBatch {
            indices: vec![9],
            pixels: vec![0; 27],
            height: 3,
            width: 3,
        })
        .unwrap();
        assert!(matches!(t.recv(), Err(InferError::WrongPatchSize { .. })));
        t.submit(InputBatch {
            indices: vec![9],
            pixels: vec![0; 5],
            height: 2,
            width: 2,
        })
        .unwrap();
        assert!(matches!(t.recv(), Err(InferError::BadBufferLength { .. })));
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
