//! Migrations, run with sea-orm-migration (its `seaql_migrations` table
//! records what was applied). Each migration's SQL lives in `schema`.

use sea_orm_migration::prelude::*;

use crate::schema;

/// All migrations, in order.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        schema::MIGRATIONS
            .iter()
            .map(|(name, up, down)| {
                Box::new(SqlMigration { name, up, down }) as Box<dyn MigrationTrait>
            })
            .collect()
    }
}

/// A migration given as SQL for both backends.
struct SqlMigration {
    name: &'static str,
    up: &'static str,
    down: &'static str,
}

impl MigrationName for SqlMigration {
    fn name(&self) -> &str {
        self.name
    }
}

async fn run(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    let pg = manager.get_database_backend() == sea_orm::DatabaseBackend::Postgres;
    let sql = schema::for_backend(sql, pg);
    for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        manager
            .get_connection()
            .execute_unprepared(statement)
            .await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for SqlMigration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, self.up).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, self.down).await
    }
}
