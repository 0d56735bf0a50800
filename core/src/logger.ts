import { pino } from 'pino'
import type { Config } from './config.ts'

export type Logger = pino.Logger

/** JSON lines on stdout; one logger per process, children per component. */
export function makeLogger(config: Pick<Config, 'logLevel'>): Logger {
  return pino({ level: config.logLevel, base: undefined, timestamp: pino.stdTimeFunctions.isoTime })
}
