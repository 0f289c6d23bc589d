//! A batch worked on in several steps, for policies that need more than one Vault call
//! per record (format 3: the record key first, then the value bound to it): each record
//! is either still at work, with the policy's state for it, or decided. A record that
//! fails in a step is decided there and skips the later steps; the others go on. Each
//! step is one Vault batch call per distinct transit key, as [`through_vault_keyed`]
//! makes for one step.
//!
//! [`through_vault_keyed`]: crate::through_vault_keyed

use crate::transit::TransitError;
use crate::{Failure, OutputRecord, ResolvedKey, SourceRecord, TransformResult};

/// What a Vault call answers: per item, or failed as a whole.
pub type Answer<O> = Result<Vec<Result<O, TransitError>>, TransitError>;

/// The records of one batch, each at work (`S`) or decided.
pub struct Batch<S> {
    slots: Vec<Slot<S>>,
}

enum Slot<S> {
    Working(S),
    Done(TransformResult),
}

/// What preparing a record decided.
pub enum Start<S> {
    /// Work on it, with this state.
    Work(S),
    /// This is its output already.
    Output(OutputRecord),
    /// It fails.
    Fail(Failure),
}

impl<S> Batch<S> {
    /// Prepares every record of `batch`, in order.
    pub fn new(
        batch: Vec<SourceRecord>,
        mut prepare: impl FnMut(SourceRecord) -> Start<S>,
    ) -> Self {
        let slots = batch
            .into_iter()
            .map(|record| match prepare(record) {
                Start::Work(state) => Slot::Working(state),
                Start::Output(output) => Slot::Done(Ok(vec![output])),
                Start::Fail(failure) => Slot::Done(Err(failure)),
            })
            .collect();
        Batch { slots }
    }

    /// The states of the records still at work, in record order.
    pub fn working(&mut self) -> impl Iterator<Item = &mut S> {
        self.slots.iter_mut().filter_map(|slot| match slot {
            Slot::Working(state) => Some(state),
            Slot::Done(_) => None,
        })
    }

    /// Runs `step` on each record still at work; a record whose step fails is decided.
    pub fn each(&mut self, mut step: impl FnMut(&mut S) -> Result<(), Failure>) {
        for slot in &mut self.slots {
            if let Slot::Working(state) = slot {
                if let Err(failure) = step(state) {
                    *slot = Slot::Done(Err(failure));
                }
            }
        }
    }

    /// One Vault step: `items` gives each record at work its transit key and items (or
    /// `None`: the record takes no part); `call` runs once per distinct key with that
    /// key's items, in order of first use; `apply` gets each record's results back in
    /// item order. A failed call or item fails its records as [`ResolvedKey::failure`]
    /// says (a key the record chose that Vault refuses is that record's fault; a fixed
    /// one pauses for the operator); a host that answers a miscount is a policy error.
    pub fn vault<K: Into<ResolvedKey>, I, O>(
        &mut self,
        what: &str,
        mut items: impl FnMut(&mut S) -> Result<Option<(K, Vec<I>)>, Failure>,
        mut call: impl FnMut(&str, &[I]) -> Answer<O>,
        mut apply: impl FnMut(&mut S, Vec<O>) -> Result<(), Failure>,
    ) {
        // Few distinct keys per batch: a list beats a map.
        let mut groups: Vec<(ResolvedKey, Vec<I>)> = Vec::new();
        // Per slot: its group and how many items it has there.
        let mut places: Vec<Option<(usize, usize)>> = Vec::with_capacity(self.slots.len());
        for slot in &mut self.slots {
            let Slot::Working(state) = slot else {
                places.push(None);
                continue;
            };
            match items(state) {
                Ok(None) => places.push(None),
                Ok(Some((key, mine))) => {
                    let key: ResolvedKey = key.into();
                    let group = match groups.iter().position(|(k, _)| *k == key) {
                        Some(group) => group,
                        None => {
                            groups.push((key, Vec::new()));
                            groups.len() - 1
                        }
                    };
                    places.push(Some((group, mine.len())));
                    groups[group].1.extend(mine);
                }
                Err(failure) => {
                    places.push(None);
                    *slot = Slot::Done(Err(failure));
                }
            }
        }
        let mut outcomes: Vec<Result<std::vec::IntoIter<Result<O, TransitError>>, Failure>> =
            groups
                .iter()
                .map(|(key, items)| {
                    if items.is_empty() {
                        return Ok(Vec::new().into_iter());
                    }
                    match call(key.name(), items) {
                        Ok(results) if results.len() == items.len() => Ok(results.into_iter()),
                        Ok(results) => Err(Failure::PolicyError(format!(
                            "{what}: host returned {} results for {} items",
                            results.len(),
                            items.len()
                        ))),
                        Err(error) => Err(key.failure(error, what)),
                    }
                })
                .collect();
        // Within a group, records own consecutive runs of items, in record order.
        for (slot, place) in self.slots.iter_mut().zip(places) {
            let (Slot::Working(state), Some((group, count))) = (&mut *slot, place) else {
                continue;
            };
            let result = match &mut outcomes[group] {
                Err(failure) => Err(failure.clone()),
                Ok(results) => {
                    // Take all of this record's results before looking at any, so an
                    // early error cannot leave some behind for the next record.
                    let mine: Vec<_> = results.by_ref().take(count).collect();
                    match mine.into_iter().collect::<Result<Vec<O>, _>>() {
                        Ok(outputs) => apply(state, outputs),
                        Err(error) => Err(groups[group].0.failure(error, what)),
                    }
                }
            };
            if let Err(failure) = result {
                *slot = Slot::Done(Err(failure));
            }
        }
    }

    /// Every record's result, in order: the decided ones as decided, the others from
    /// `finish`.
    pub fn finish(
        self,
        mut finish: impl FnMut(S) -> Result<OutputRecord, Failure>,
    ) -> Vec<TransformResult> {
        self.slots
            .into_iter()
            .map(|slot| match slot {
                Slot::Done(result) => result,
                Slot::Working(state) => finish(state).map(|output| vec![output]),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::record;

    fn words(batch: &[&str]) -> Batch<String> {
        Batch::new(
            batch.iter().map(|value| record("k", value)).collect(),
            |record| match record.value.as_deref() {
                Some(b"fail") => Start::Fail(Failure::InvalidInput("fail".into())),
                Some(b"done") => Start::Output(crate::forward(record)),
                value => Start::Work(String::from_utf8(value.unwrap().to_vec()).unwrap()),
            },
        )
    }

    fn results(batch: Batch<String>) -> Vec<Result<String, Failure>> {
        batch
            .finish(|state| {
                Ok(OutputRecord {
                    topic: None,
                    key: None,
                    value: Some(state.into_bytes()),
                    headers: Vec::new(),
                })
            })
            .into_iter()
            .map(|result| {
                result.map(|mut out| String::from_utf8(out.remove(0).value.unwrap()).unwrap())
            })
            .collect()
    }

    #[test]
    fn a_record_failed_in_one_step_skips_the_next_and_the_others_go_on() {
        let mut batch = words(&["a:x", "fail", "b:y", "done", "a:bad", "skip", "a:z"]);
        let mut calls = Vec::new();
        batch.vault(
            "step",
            |state| match state.split_once(':') {
                None => Ok(None),
                Some((key, word)) => Ok(Some((key.to_string(), vec![word.to_string()]))),
            },
            |key, items| {
                calls.push(format!("{key}:{}", items.join(",")));
                Ok(items
                    .iter()
                    .map(|i| match i.as_str() {
                        "bad" => Err(TransitError::InvalidInput("bad".into())),
                        i => Ok(i.to_uppercase()),
                    })
                    .collect())
            },
            |state, mut outputs| {
                *state = outputs.remove(0);
                Ok(())
            },
        );
        assert_eq!(calls, ["a:x,bad,z", "b:y"]);
        let mut second = 0;
        batch.each(|state| {
            second += 1;
            state.push('!');
            Ok(())
        });
        assert_eq!(second, 4, "X, Y, skip and Z are still at work");
        let results = results(batch);
        assert_eq!(results[0], Ok("X!".into()));
        assert!(matches!(&results[1], Err(Failure::InvalidInput(m)) if m == "fail"));
        assert_eq!(results[2], Ok("Y!".into()));
        assert_eq!(results[3], Ok("done".into()));
        assert!(matches!(&results[4], Err(Failure::InvalidInput(m)) if m == "step: bad"));
        assert_eq!(results[5], Ok("skip!".into()));
        assert_eq!(results[6], Ok("Z!".into()));
    }

    #[test]
    fn a_failed_call_or_a_miscount_fails_only_that_keys_records() {
        let mut batch = words(&["a:x", "b:y", "c:z"]);
        batch.vault(
            "step",
            |state| {
                let (key, word) = state.split_once(':').unwrap();
                Ok(Some((key.to_string(), vec![word.to_string()])))
            },
            |key, items| match key {
                "a" => Err(TransitError::Unavailable("sealed".into())),
                "b" => Ok(Vec::new()),
                _ => Ok(items.iter().map(|i| Ok(i.clone())).collect()),
            },
            |state, outputs| {
                *state = outputs.concat();
                Ok(())
            },
        );
        let results = results(batch);
        assert!(matches!(&results[0], Err(Failure::Retryable(m)) if m == "step: sealed"));
        assert!(
            matches!(&results[1], Err(Failure::PolicyError(m)) if m.contains("0 results for 1"))
        );
        assert_eq!(results[2], Ok("z".into()));
    }
}
