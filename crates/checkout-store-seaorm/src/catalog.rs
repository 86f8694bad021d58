//! The catalog's prices in the store's memory, so that quoting an order
//! costs no round trip to the database.
//!
//! Why a stale price is safe: the reservation takes each book only at the
//! price quoted (a gate in its statement), so a price changed elsewhere —
//! by another instance, or by hand in the database — is refused, never
//! charged. The pipeline then quotes again with `CatalogRead::Fresh`, and
//! that read replaces what is remembered here. Prices this store writes
//! itself (`upsert_stock`) are remembered as they are written.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use checkout_domain::{BookId, Money};

/// How many books are remembered before the memory starts again empty: a
/// bound of about a megabyte and a half for catalogs larger than the set of
/// books being bought.
const CAPACITY: usize = 16_384;

/// Book prices as last read from or written to the catalog; clones share
/// one memory.
#[derive(Debug, Clone, Default)]
pub(crate) struct PriceMemory(Arc<RwLock<HashMap<BookId, Money>>>);

impl PriceMemory {
    /// The remembered prices of `books` (each once), or `None` unless every
    /// one of them is remembered: a book the catalog may not have is always
    /// asked of the catalog.
    pub(crate) fn quote(&self, books: &[BookId]) -> Option<Vec<(BookId, Money)>> {
        let prices = self.0.read().unwrap_or_else(PoisonError::into_inner);
        let mut quote: Vec<(BookId, Money)> = Vec::with_capacity(books.len());
        for book in books {
            if !quote.iter().any(|(b, _)| b == book) {
                quote.push((book.clone(), *prices.get(book)?));
            }
        }
        Some(quote)
    }

    /// Takes what the catalog answered when asked for `books`: the prices it
    /// returned, and the absence of the books it did not.
    pub(crate) fn learn(&self, books: &[BookId], answer: &[(BookId, Money)]) {
        let mut prices = self.0.write().unwrap_or_else(PoisonError::into_inner);
        for book in books {
            prices.remove(book);
        }
        if prices.len() + answer.len() > CAPACITY {
            prices.clear();
        }
        for (book, price) in answer {
            prices.insert(book.clone(), *price);
        }
    }

    /// A price this store has just written.
    pub(crate) fn set(&self, book: &BookId, price: Money) {
        self.learn(std::slice::from_ref(book), &[(book.clone(), price)]);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::str::FromStr;

    use checkout_domain::Currency;
    use rust_decimal::Decimal;

    use super::*;

    fn book(id: &str) -> BookId {
        BookId::parse(id).unwrap()
    }

    fn usd(amount: &str) -> Money {
        Money::new(Decimal::from_str(amount).unwrap(), Currency::USD).unwrap()
    }

    #[test]
    fn quotes_only_when_every_book_is_remembered() {
        let memory = PriceMemory::default();
        memory.learn(
            &[book("bk-a"), book("bk-b")],
            &[(book("bk-a"), usd("12.50"))],
        );
        assert_eq!(memory.quote(&[book("bk-a"), book("bk-b")]), None);
        assert_eq!(
            memory.quote(&[book("bk-a"), book("bk-a")]),
            Some(vec![(book("bk-a"), usd("12.50"))])
        );
    }

    #[test]
    fn a_fresh_answer_replaces_and_forgets() {
        let memory = PriceMemory::default();
        memory.learn(&[book("bk-a")], &[(book("bk-a"), usd("12.50"))]);
        memory.set(&book("bk-a"), usd("9.99"));
        assert_eq!(
            memory.quote(&[book("bk-a")]),
            Some(vec![(book("bk-a"), usd("9.99"))])
        );
        // The catalog no longer has it.
        memory.learn(&[book("bk-a")], &[]);
        assert_eq!(memory.quote(&[book("bk-a")]), None);
    }

    #[test]
    fn starts_again_empty_rather_than_grow_past_its_bound() {
        let memory = PriceMemory::default();
        let books: Vec<BookId> = (0..CAPACITY).map(|i| book(&format!("bk-{i}"))).collect();
        let answer: Vec<_> = books.iter().map(|b| (b.clone(), usd("1.00"))).collect();
        memory.learn(&books, &answer);
        assert!(memory.quote(&books).is_some());
        memory.learn(&[book("bk-new")], &[(book("bk-new"), usd("2.00"))]);
        assert_eq!(memory.quote(&books[..1]), None);
        assert_eq!(
            memory.quote(&[book("bk-new")]),
            Some(vec![(book("bk-new"), usd("2.00"))])
        );
        assert!(memory.0.read().unwrap().len() <= CAPACITY);
    }
}
