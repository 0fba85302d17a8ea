//! Semiring propagation waves on the device.
//!
//! A full wave of a `mmsb_core::SemiringNetwork` is planned by mmsb-core as a
//! `WavePlan`: per node, in level order, `Reset` (`x_v := b_v`, or the zero
//! vector) then one `Accumulate { parent }` per semiring edge
//! (`x_v ⊕= W_uv ⊗ x_u`). [`SemiringWaveProgram::from_network`] takes that plan
//! and the network's inputs and weights and turns every weight into a CSR
//! matrix (a scalar `c` becomes the diagonal `c·I`, a diagonal its matrix), so
//! each `Accumulate` is one CSR SpMV (`kernels/semiring.cu`, `t = W ⊗ x_u`) and
//! one accumulate (`x_v ⊕= t`) on the device. All node vectors and matrices
//! stay on the device for the whole wave; the values are read back once at
//! the end.
//!
//! [`GpuStore::run_semiring_wave`] runs a program on the store's device, and
//! on the CPU (the same commands with mmsb-core's semiring operations,
//! [`SemiringWaveProgram::run_cpu`]) without one or when a launch fails
//! (counted in `ops_finished_on_cpu`). The result equals
//! `SemiringNetwork::run_full` exactly for exact semirings (integers, min,
//! max, or): the row folds `⊕_k W[r,k] ⊗ x[k]` are regrouped as
//! `b ⊕ (⊕ row₁) ⊕ (⊕ row₂)`, which only changes float sums (plus-times over
//! floats agrees within rounding). Incremental (`Settle` / `Push`) plans are
//! not run on the device: they are `Unsupported`.

use crate::backend::Backend;
use crate::csr::Csr;
use crate::cuda_device::CudaDevice;
use crate::gpu_store::GpuStore;
use crate::semiring_core::{self, Elem, Semiring};
use crate::semiring_gpu::{self, Scratch};
use mmsb_core::error::{Error, ErrorCode, Result};
use mmsb_core::semiring::Semiring as CoreSemiring;
use mmsb_core::{PageId, SemiringNetwork, WaveOp, Weight};
use std::collections::{BTreeMap, HashMap};

/// One step of a device wave (indices into the program's tables).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SemiringStep {
    /// `x[node] := input[node]` (or the zero vector).
    Reset {
        /// Node index.
        node: usize,
    },
    /// `x[node] ⊕= matrices[matrix] ⊗ x[parent]`.
    Accumulate {
        /// Node index.
        node: usize,
        /// Parent index.
        parent: usize,
        /// Matrix index.
        matrix: usize,
    },
}

/// A full semiring wave ready to run: nodes, inputs, CSR weights, steps.
#[derive(Clone, Debug)]
pub struct SemiringWaveProgram<T> {
    /// The semiring's kernels.
    pub semiring: Semiring,
    /// The semiring's zero (the value of a node without input before its parents).
    pub zero: T,
    /// The nodes, in plan order.
    pub nodes: Vec<PageId>,
    /// Each node's length.
    pub lens: Vec<usize>,
    /// Each node's input vector, if any.
    pub inputs: Vec<Option<Vec<T>>>,
    /// The edges' weights as CSR (rows: child entries, columns: parent entries).
    pub matrices: Vec<Csr<T>>,
    /// The steps, in the plan's order.
    pub steps: Vec<SemiringStep>,
}

fn diagonal<T: Copy>(d: &[T]) -> Csr<T> {
    let n = d.len();
    Csr {
        nrows: n,
        ncols: n,
        row_ptr: (0..=n as u32).collect(),
        cols: (0..n as u32).collect(),
        vals: d.to_vec(),
    }
}

impl<T: Elem> SemiringWaveProgram<T> {
    /// The full wave of `net` (its `plan_full()`), with every weight as CSR.
    /// `Unsupported` for a semiring without device kernels (a user-defined
    /// one, max-times, min-max, or a pair mmsb-core lacks).
    pub fn from_network<S: CoreSemiring<Elem = T>>(
        net: &SemiringNetwork<S>,
    ) -> Result<SemiringWaveProgram<T>> {
        let s = net.semiring();
        let semiring = s
            .descriptor()
            .and_then(|(kind, _)| Semiring::from_kind(kind))
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::Unsupported,
                    "this semiring has no device kernels (built-in plus-times, min-plus, max-plus and or-and do)",
                )
            })?;
        semiring.check(T::TYPE)?;
        let plan = net.plan_full();
        let mut index: HashMap<PageId, usize> = HashMap::new();
        let mut p = SemiringWaveProgram {
            semiring,
            zero: s.zero(),
            nodes: Vec::new(),
            lens: Vec::new(),
            inputs: Vec::new(),
            matrices: Vec::new(),
            steps: Vec::new(),
        };
        let mut node_of = |p: &mut SemiringWaveProgram<T>, id: PageId| -> Result<usize> {
            if let Some(&i) = index.get(&id) {
                return Ok(i);
            }
            let i = p.nodes.len();
            p.nodes.push(id);
            p.lens.push(net.len_of(id)?);
            p.inputs.push(net.input(id)?.map(|b| b.to_vec()));
            index.insert(id, i);
            Ok(i)
        };
        for c in &plan.commands {
            let node = node_of(&mut p, c.node)?;
            match c.op {
                WaveOp::Reset => p.steps.push(SemiringStep::Reset { node }),
                WaveOp::Accumulate { parent } => {
                    let pi = node_of(&mut p, parent)?;
                    let w = net.weight(parent, c.node).ok_or_else(|| {
                        Error::invalid(format!("no semiring edge {parent:?} -> {:?}", c.node))
                    })?;
                    w.check_shape(p.lens[pi], p.lens[node])?;
                    let m = match w {
                        Weight::Scalar(k) => diagonal(&vec![*k; p.lens[node]]),
                        Weight::Diagonal(d) => diagonal(d),
                        Weight::Matrix(a) => Csr::from_core(a)?,
                    };
                    p.matrices.push(m);
                    p.steps.push(SemiringStep::Accumulate {
                        node,
                        parent: pi,
                        matrix: p.matrices.len() - 1,
                    });
                }
                WaveOp::Settle | WaveOp::Push { .. } => {
                    return Err(Error::new(
                        ErrorCode::Unsupported,
                        "incremental semiring waves do not run on the device",
                    ))
                }
            }
        }
        Ok(p)
    }

    fn start(&self, node: usize) -> Vec<T> {
        match &self.inputs[node] {
            Some(b) => b.clone(),
            None => vec![self.zero; self.lens[node]],
        }
    }

    /// The wave on the CPU, step by step, with mmsb-core's semiring
    /// operations (the fallback, and the emulated device).
    pub fn run_cpu(&self) -> Result<BTreeMap<PageId, Vec<T>>> {
        let mut x: Vec<Vec<T>> = self.lens.iter().map(|&n| vec![self.zero; n]).collect();
        for step in &self.steps {
            match *step {
                SemiringStep::Reset { node } => x[node] = self.start(node),
                SemiringStep::Accumulate {
                    node,
                    parent,
                    matrix,
                } => {
                    let mut t = vec![self.zero; self.lens[node]];
                    semiring_core::spmv(self.semiring, &self.matrices[matrix], &x[parent], &mut t)?;
                    semiring_core::accumulate(self.semiring, &mut x[node], &t, None)?;
                }
            }
        }
        Ok(self.nodes.iter().copied().zip(x).collect())
    }

    /// The wave on a CUDA device: node vectors and matrices uploaded once,
    /// one SpMV and one accumulate launch per `Accumulate`, values read back
    /// at the end.
    pub fn run_device(&self, dev: &CudaDevice) -> Result<BTreeMap<PageId, Vec<T>>> {
        let size = std::mem::size_of::<T>();
        let mut sc = Scratch::new(dev);
        let mut bufs = Vec::with_capacity(self.nodes.len());
        for &n in &self.lens {
            bufs.push(sc.alloc(n * size)?);
        }
        let mut mats = Vec::with_capacity(self.matrices.len());
        for m in &self.matrices {
            mats.push(semiring_gpu::upload_csr(&mut sc, m)?);
        }
        let longest = self.lens.iter().copied().max().unwrap_or(0);
        let tmp = sc.alloc(longest * size)?;
        for step in &self.steps {
            match *step {
                SemiringStep::Reset { node } => {
                    let v = self.start(node);
                    dev.upload(bufs[node], T::slice_as_bytes(&v))?;
                }
                SemiringStep::Accumulate {
                    node,
                    parent,
                    matrix,
                } => {
                    semiring_gpu::spmv_device(
                        dev,
                        self.semiring,
                        T::TYPE,
                        &mats[matrix],
                        bufs[parent],
                        tmp,
                    )?;
                    semiring_gpu::accumulate_device(
                        dev,
                        self.semiring,
                        T::TYPE,
                        bufs[node],
                        tmp,
                        0,
                        self.lens[node] as u64,
                    )?;
                }
            }
        }
        dev.sync()?;
        let mut out = BTreeMap::new();
        for (i, &id) in self.nodes.iter().enumerate() {
            let mut b = vec![0u8; self.lens[i] * size];
            dev.download(bufs[i], &mut b)?;
            out.insert(id, semiring_gpu::from_bytes::<T>(&b));
        }
        Ok(out)
    }
}

impl Backend {
    /// A semiring wave on the backend (the emulated device runs it on the CPU).
    pub fn semiring_wave<T: Elem>(
        &mut self,
        p: &SemiringWaveProgram<T>,
    ) -> Result<BTreeMap<PageId, Vec<T>>> {
        match self {
            Backend::Emulated(_) => p.run_cpu(),
            Backend::Cuda(c) => p.run_device(&c.dev),
        }
    }
}

impl GpuStore {
    /// Runs a full wave of `net` on the device (see the module docs) and
    /// returns every node's value; the network itself is not changed. Falls
    /// back to the CPU without a device or when a launch fails.
    pub fn run_semiring_wave<S>(
        &mut self,
        net: &SemiringNetwork<S>,
    ) -> Result<BTreeMap<PageId, Vec<S::Elem>>>
    where
        S: CoreSemiring,
        S::Elem: Elem,
    {
        let p = SemiringWaveProgram::from_network(net)?;
        self.run_op(|b| b.semiring_wave(&p), || p.run_cpu())
    }
}
