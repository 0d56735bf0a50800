export * from './demo.ts'
export * from './redis-server.ts'
export * from './secrets.ts'
export * from './service.ts'
