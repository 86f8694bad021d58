//! A small demo catalog for the embedded default, so that a fresh service
//! can take an order straight away.

/// `(book id, title, price in USD, copies in stock)`.
pub const BOOKS: &[(&str, &str, &str, u32)] = &[
    ("bk-0001", "Pride and Prejudice — Jane Austen", "12.50", 40),
    ("bk-0002", "Moby-Dick — Herman Melville", "15.99", 25),
    ("bk-0003", "Middlemarch — George Eliot", "18.00", 20),
    (
        "bk-0004",
        "Crime and Punishment — Fyodor Dostoevsky",
        "14.25",
        30,
    ),
    (
        "bk-0005",
        "The Odyssey — Homer (trans. Emily Wilson)",
        "19.95",
        15,
    ),
    ("bk-0006", "Frankenstein — Mary Shelley", "9.99", 50),
    (
        "bk-0007",
        "Great Expectations — Charles Dickens",
        "11.40",
        35,
    ),
    ("bk-0008", "Anna Karenina — Leo Tolstoy", "21.00", 12),
    (
        "bk-0009",
        "The Brothers Karamazov — Fyodor Dostoevsky",
        "23.50",
        10,
    ),
    ("bk-0010", "Jane Eyre — Charlotte Brontë", "10.75", 45),
    ("bk-0011", "Don Quixote — Miguel de Cervantes", "24.99", 8),
    (
        "bk-0012",
        "The Count of Monte Cristo — Alexandre Dumas",
        "17.30",
        3,
    ),
];
