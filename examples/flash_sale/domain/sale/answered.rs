//! Requests this instance saw Redis refuse over the per-user limit, so that
//! a retry arriving after the SKU sold out gets `limit_exceeded` back
//! instead of the local sold-out flag's `sold_out`. (Grants need no memory
//! here: the flag knows every grant of the SKU.)
//!
//! Bounded: the oldest ids are forgotten first. A retry of a forgotten id, or
//! one that lands on another instance, is answered `sold_out` by that
//! instance's flag: a refusal either way.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use crate::domain::purchase::Answer;

/// Request ids and their first answers, oldest evicted first.
#[derive(Debug)]
pub struct Answered {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    answers: HashMap<Box<str>, Answer>,
    order: VecDeque<Box<str>>,
}

impl Answered {
    /// Remembers up to `capacity` requests (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Remembers the first answer Redis gave `request_id`.
    pub fn remember(&self, request_id: &str, answer: Answer) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.answers.contains_key(request_id) {
            return;
        }
        if inner.order.len() >= self.capacity
            && let Some(oldest) = inner.order.pop_front()
        {
            inner.answers.remove(&oldest);
        }
        let id: Box<str> = request_id.into();
        inner.order.push_back(id.clone());
        inner.answers.insert(id, answer);
    }

    /// The first answer of `request_id`, if remembered.
    pub fn get(&self, request_id: &str) -> Option<Answer> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.answers.get(request_id).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_first_answers_and_evicts_the_oldest() {
        let answered = Answered::new(2);
        answered.remember("a", Answer::Queued);
        answered.remember("a", Answer::LimitExceeded);
        answered.remember("b", Answer::LimitExceeded);
        assert_eq!(answered.get("a"), Some(Answer::Queued));
        answered.remember("c", Answer::Queued);
        assert_eq!(answered.get("a"), None);
        assert_eq!(answered.get("b"), Some(Answer::LimitExceeded));
        assert_eq!(answered.get("c"), Some(Answer::Queued));
    }
}
