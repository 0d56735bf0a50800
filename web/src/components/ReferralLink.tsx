import { createSignal, Show } from 'solid-js'
import type { Referral } from '../api.ts'

/** The link with Copy (and a visible confirmation) and the share buttons. */
export function ReferralLink(props: { referral: Referral }) {
  const [copied, setCopied] = createSignal<'idle' | 'copied' | 'failed'>('idle')
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(props.referral.link)
      setCopied('copied')
    } catch {
      setCopied('failed')
    }
    setTimeout(() => setCopied('idle'), 2500)
  }
  return (
    <section class="panel referral">
      <h2>Your referral link</h2>
      <p class="muted">
        Friends get $2.50 of API credit; you earn{' '}
        {props.referral.track === 'partner' ? '10% in cash' : '5% as credit'} of what they buy.
      </p>
      <div class="link-row">
        <input class="link" readonly value={props.referral.link} aria-label="Referral link" />
        <button type="button" onClick={copy}>
          Copy
        </button>
      </div>
      <div class="share-row">
        <span class="code">
          Code <strong>{props.referral.code}</strong>
        </span>
        <a class="button" href={props.referral.share.twitter} target="_blank" rel="noopener">
          Share on X
        </a>
        <a class="button" href={props.referral.share.linkedin} target="_blank" rel="noopener">
          Share on LinkedIn
        </a>
        <Show when={copied() !== 'idle'}>
          <span class="toast" role="status">
            {copied() === 'copied' ? 'Link copied' : 'Copy failed: select the link and copy it'}
          </span>
        </Show>
      </div>
    </section>
  )
}
