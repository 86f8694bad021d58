//! The tables as SeaORM entities — private to the store: the rest of the
//! service sees domain types only (see `convert`). Column types follow the
//! migrations: ids as UUIDs, instants as `i64` microseconds, money as `i64`
//! minor units, JSON as text.

pub(crate) mod orders {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "orders")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub customer_id: String,
        pub state: String,
        pub currency: String,
        pub tax_rate: String,
        pub shipping_minor: i64,
        pub refunded_minor: i64,
        pub subtotal_minor: Option<i64>,
        pub tax_minor: Option<i64>,
        pub total_minor: Option<i64>,
        pub reservation_id: Option<Uuid>,
        pub reservation_expires_at: Option<i64>,
        pub reservation_status: Option<String>,
        pub payment_provider: Option<String>,
        pub payment_attempt: Option<i64>,
        pub payment_idempotency_key: Option<String>,
        pub payment_intent_id: Option<String>,
        pub payment_transaction_id: Option<String>,
        pub payment_status: Option<String>,
        pub payment_client_secret: Option<String>,
        pub payment_next_action: Option<String>,
        pub payment_failure_code: Option<String>,
        pub payment_failure_message: Option<String>,
        pub shipping_address: Option<String>,
        pub billing_address: Option<String>,
        pub version: i64,
        pub event_sequence: i64,
        pub created_at: i64,
        pub updated_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod order_items {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "order_items")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub order_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub line_no: i64,
        pub book_id: String,
        pub quantity: i64,
        pub unit_price_minor: Option<i64>,
        pub expected_unit_price_minor: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod audit_log {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_log")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub order_id: Uuid,
        pub previous_state: Option<String>,
        pub new_state: String,
        pub reason: String,
        pub metadata: String,
        pub actor: Option<String>,
        pub at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod refunds {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "refunds")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub order_id: Uuid,
        pub amount_minor: i64,
        pub currency: String,
        pub status: String,
        pub provider_refund_id: Option<String>,
        pub reason: Option<String>,
        pub failure_reason: Option<String>,
        pub created_at: i64,
        pub updated_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod idempotency_keys {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "idempotency_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub scope: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub fingerprint: String,
        pub status: String,
        pub response_status: Option<i64>,
        pub response_headers: Option<String>,
        pub response_body: Option<Vec<u8>>,
        pub created_at: i64,
        pub locked_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod stock {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "stock")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub book_id: String,
        pub title: String,
        pub price_minor: i64,
        pub currency: String,
        pub available: i64,
        pub reserved: i64,
        pub updated_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod reservations {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "reservations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub order_id: Uuid,
        pub currency: String,
        pub status: String,
        pub expires_at: i64,
        pub created_at: i64,
        pub updated_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod reservation_items {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "reservation_items")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub reservation_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub line_no: i64,
        pub book_id: String,
        pub quantity: i64,
        pub unit_price_minor: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
