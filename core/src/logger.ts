import { pino } from 'pino'
import type { Config } from './config.ts'

export type Logger = pino.Logger

/** JSON lines on stdout (or the given stream); one logger per process, children per component. */
export function makeLogger(config: Pick<Config, 'logLevel'>, destination?: pino.DestinationStream): Logger {
  const opts = { level: config.logLevel, base: undefined, timestamp: pino.stdTimeFunctions.isoTime }
  return destination === undefined ? pino(opts) : pino(opts, destination)
}
