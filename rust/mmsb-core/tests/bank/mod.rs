//! Shared by the transaction tests (as `mod bank`): a bank of accounts spread
//! over pages, transfers as transactions, and the serial oracle read from the log.
//!
//! Accounts are `i64` balances, little-endian, [`PER_PAGE`] to a page, created
//! by the store's first commit (so the pages are ids `1..=pages`). A transfer
//! reads the two accounts' pages, moves `amount` if the source can pay (a
//! transfer that cannot pay only read, and commits without logging), and
//! records its intent: `{"t":thread,"n":seq,"from":a,"to":b,"amount":x}`.
//!
//! The oracle ([`replay_log`]) knows nothing of transactions: it reads every
//! commit group of the log in LSN order and replays the transfers their intents
//! describe on a plain array of balances, checking on the way that each one
//! could pay at that point of the serial order and that the bytes the commit
//! wrote are exactly the balances the serial replay computes.

#![allow(dead_code)]

use mmsb_core::recovery::LOG_DIR;
use mmsb_core::tlog_reader;
use mmsb_core::tlog_record::Record;
use mmsb_core::vfs::RealVfs;
use mmsb_core::{Delta, Op, PageId, PageLocation, Result, Store, Transaction};
use std::collections::HashSet;
use std::path::Path;

/// Accounts per page.
pub const PER_PAGE: u64 = 16;
/// Opening balance of every account.
pub const INITIAL: i64 = 1_000;

/// The bank's shape.
#[derive(Clone, Copy, Debug)]
pub struct Bank {
    /// Number of accounts.
    pub accounts: u64,
}

impl Bank {
    /// Pages the accounts occupy.
    pub fn pages(self) -> u64 {
        self.accounts.div_ceil(PER_PAGE)
    }

    /// Page ids (ids `1..=pages`: the bank's commit is the store's first).
    pub fn page_ids(self) -> Vec<PageId> {
        (1..=self.pages()).map(PageId).collect()
    }

    /// The page and byte offset of an account.
    pub fn locate(self, account: u64) -> (PageId, u64) {
        (PageId(account / PER_PAGE + 1), (account % PER_PAGE) * 8)
    }

    /// The total that every consistent view must show.
    pub fn total(self) -> i64 {
        self.accounts as i64 * INITIAL
    }

    /// Creates the accounts with their opening balances (the store must be empty).
    pub fn open_accounts(self, store: &Store) {
        let mut ops: Vec<Op> = (0..self.pages())
            .map(|_| Op::CreatePage {
                size: PER_PAGE * 8,
                location: PageLocation::Cpu,
            })
            .collect();
        for a in 0..self.accounts {
            let (p, off) = self.locate(a);
            ops.push(Op::Delta(Delta::dense(
                p,
                off,
                INITIAL.to_le_bytes().to_vec(),
            )));
        }
        let r = store.commit(ops).unwrap();
        assert_eq!(r.lsn, 1, "the bank must be the store's first commit");
        assert_eq!(r.created, self.page_ids());
    }

    /// Balances from page bytes, in account order.
    pub fn balances(self, page_bytes: impl Fn(PageId) -> Vec<u8>) -> Vec<i64> {
        let mut out = Vec::with_capacity(self.accounts as usize);
        for p in self.page_ids() {
            let b = page_bytes(p);
            for c in b.chunks_exact(8) {
                if (out.len() as u64) < self.accounts {
                    out.push(i64::from_le_bytes(c.try_into().unwrap()));
                }
            }
        }
        out
    }

    /// The sum of the balances stored in one page's bytes.
    pub fn balances_of_page(self, bytes: &[u8]) -> i64 {
        bytes
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .sum()
    }

    /// One transfer inside `txn`. Returns whether money moved.
    pub fn transfer(
        self,
        txn: &mut Transaction<'_>,
        ids: (u64, u64),
        from: u64,
        to: u64,
        amount: i64,
    ) -> Result<bool> {
        let (fp, fo) = self.locate(from);
        let (tp, to_off) = self.locate(to);
        let fb = txn.read(fp)?;
        let from_bal = read_i64(&fb, fo);
        let tb = txn.read(tp)?;
        let to_bal = read_i64(&tb, to_off);
        if from == to || from_bal < amount {
            return Ok(false);
        }
        txn.set_intent(format!(
            r#"{{"t":{},"n":{},"from":{from},"to":{to},"amount":{amount}}}"#,
            ids.0, ids.1
        ))?;
        txn.write(Delta::dense(
            fp,
            fo,
            (from_bal - amount).to_le_bytes().to_vec(),
        ))?;
        txn.write(Delta::dense(
            tp,
            to_off,
            (to_bal + amount).to_le_bytes().to_vec(),
        ))?;
        Ok(true)
    }
}

/// The `i64` at byte `off`.
pub fn read_i64(b: &[u8], off: u64) -> i64 {
    let o = off as usize;
    i64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// What the serial replay of the log found.
#[derive(Debug)]
pub struct Replayed {
    /// Balances after the last commit in the log.
    pub balances: Vec<i64>,
    /// LSN of the last commit in the log.
    pub last_lsn: u64,
    /// Transfer commits in the log.
    pub transfers: u64,
    /// The (thread, seq) ids of the logged transfers (each must appear once).
    pub ids: HashSet<(u64, u64)>,
}

/// Replays the log of data directory `dir` serially (see the module docs),
/// panicking where the log contradicts a serial execution.
pub fn replay_log(bank: Bank, dir: &Path) -> Replayed {
    let mut bal = vec![INITIAL; bank.accounts as usize];
    let mut ids = HashSet::new();
    let mut transfers = 0;
    let mut last_lsn = 0;
    let scan = tlog_reader::scan(&RealVfs, &dir.join(LOG_DIR), |f, records| {
        last_lsn = f.lsn;
        if f.lsn == 1 {
            return Ok(()); // the bank's opening commit
        }
        let deltas: Vec<&Delta> = records
            .iter()
            .map(|r| match r {
                Record::Delta(d) => d,
                other => panic!("LSN {}: unexpected record {other:?}", f.lsn),
            })
            .collect();
        assert_eq!(deltas.len(), 2, "LSN {}: a transfer writes two accounts", f.lsn);
        let intent = deltas[0].intent.as_deref().expect("transfer intent");
        assert!(deltas.iter().all(|d| d.intent.as_deref() == Some(intent)));
        let v: serde_json::Value = serde_json::from_str(intent).unwrap();
        let g = |k: &str| v[k].as_i64().unwrap();
        let (from, to, amount) = (g("from") as usize, g("to") as usize, g("amount"));
        assert!(
            ids.insert((g("t") as u64, g("n") as u64)),
            "LSN {}: transfer {intent} logged twice",
            f.lsn
        );
        assert!(
            bal[from] >= amount,
            "LSN {}: {intent} overdraws account {from} ({}) in the serial order",
            f.lsn,
            bal[from]
        );
        bal[from] -= amount;
        bal[to] += amount;
        for (d, acct) in [(deltas[0], from), (deltas[1], to)] {
            let (p, off) = bank.locate(acct as u64);
            assert_eq!((d.page, d.offset), (p, off), "LSN {}", f.lsn);
            let written = i64::from_le_bytes(d.payload.bytes().try_into().unwrap());
            assert_eq!(
                written, bal[acct],
                "LSN {}: account {acct} written as {written}, serial replay says {} (a lost update)",
                f.lsn, bal[acct]
            );
        }
        transfers += 1;
        Ok(())
    })
    .unwrap();
    assert!(scan.end.corruption_error().is_none(), "{:?}", scan.end);
    Replayed {
        balances: bal,
        last_lsn,
        transfers,
        ids,
    }
}

/// A small deterministic generator (each thread its own stream).
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// An environment variable as a number, or `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
