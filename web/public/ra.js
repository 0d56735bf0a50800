/*
 * Referral click script: include it on a landing page with
 *   <script src="https://YOUR-SERVICE/ra.js" defer></script>
 * It reads ?ref=CODE, keeps the code in a first-party cookie for the attribution window
 * (data-window-days, default 30), sends one click per visit to the service, and gives the
 * marketplace the visitor id to pass on at signup: window.referral.visitorId() (also the
 * ra_vid cookie) and window.referral.code(). Plain document.cookie, which every browser
 * has, rather than the newer Cookie Store API.
 */
;(() => {
  const script = document.currentScript
  const base = script?.src ? new URL(script.src).origin : location.origin
  const days = Number(script?.getAttribute('data-window-days') || 30)
  const CODE = /^[0-9A-HJKMNP-TV-Z]{8}$/

  const cookie = (name) => {
    const m = document.cookie.match(new RegExp(`(?:^|; )${name}=([^;]*)`))
    return m ? decodeURIComponent(m[1]) : null
  }
  const setCookie = (name, value) => {
    const secure = location.protocol === 'https:' ? '; Secure' : ''
    document.cookie = `${name}=${encodeURIComponent(value)}; Max-Age=${days * 86400}; Path=/; SameSite=Lax${secure}`
  }
  const newId = () =>
    crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}${Math.random().toString(16).slice(2)}`
  const sentThisVisit = (code) => {
    const key = `ra_clicked_${code}`
    try {
      const sent = sessionStorage.getItem(key) === '1'
      sessionStorage.setItem(key, '1')
      return sent
    } catch {
      return false
    }
  }

  let visitor = cookie('ra_vid')
  if (!visitor) {
    visitor = newId()
    setCookie('ra_vid', visitor)
  }
  const fromUrl = (new URLSearchParams(location.search).get('ref') || '').toUpperCase()
  const code = CODE.test(fromUrl) ? fromUrl : cookie('ra_ref')
  if (CODE.test(fromUrl)) {
    setCookie('ra_ref', fromUrl)
    if (!sentThisVisit(fromUrl)) {
      fetch(`${base}/v1/track/click`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        keepalive: true,
        body: JSON.stringify({
          code: fromUrl,
          visitor_id: visitor,
          url: location.href,
          referrer: document.referrer || undefined,
        }),
      })
    }
  }
  window.referral = { visitorId: () => visitor, code: () => code || null }
})()
