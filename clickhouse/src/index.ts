export * from './client.ts'
export * from './cluster.ts'
export * from './migrate.ts'
export * from './rows.ts'
