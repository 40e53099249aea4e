// HarnessServer console: live regions. A region ([data-live-version]) is refreshed by fetching the page again and
// swapping the region in when its version changed: on each event of its stream ([data-live-events], Server-Sent
// Events) or every [data-live-poll] milliseconds. No inline script anywhere (the CSP forbids it).
(() => {
  'use strict';
  const region = document.querySelector('[data-live-version]');
  if (!region || !region.id) {
    return;
  }

  const say = (text) => {
    const status = region.querySelector('[data-live-status]');
    if (status) {
      status.textContent = text;
    }
  };

  // Someone typing a comment or choosing in the region keeps what they typed: the swap waits.
  const editing = () => Array.from(region.querySelectorAll('textarea, input, select')).some((field) =>
    field === document.activeElement || (('defaultValue' in field) && field.type !== 'hidden' && field.value !== field.defaultValue));

  let running = false;
  let again = false;
  async function refresh() {
    if (running) {
      again = true;
      return;
    }

    running = true;
    try {
      const response = await fetch(window.location.href, { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'text/html' } });
      if (!response.ok || response.redirected) {
        say('(live updates stopped: reload the page)');
        return;
      }

      const page = new DOMParser().parseFromString(await response.text(), 'text/html');
      const fresh = page.getElementById(region.id);
      if (fresh && fresh.dataset.liveVersion !== region.dataset.liveVersion && !editing()) {
        region.replaceChildren(...Array.from(fresh.childNodes, (node) => document.importNode(node, true)));
        region.dataset.liveVersion = fresh.dataset.liveVersion;
        say('(live)');
      }
    } catch {
      say('(offline, retrying)');
    } finally {
      running = false;
      if (again) {
        again = false;
        refresh();
      }
    }
  }

  if (region.dataset.liveEvents) {
    const source = new EventSource(region.dataset.liveEvents);
    source.addEventListener('changed', refresh);
    source.addEventListener('open', () => say('(live)'));
    source.addEventListener('error', () => say('(reconnecting)'));
  }

  const every = Number(region.dataset.livePoll);
  if (every > 0) {
    say('(live)');
    window.setInterval(refresh, Math.max(every, 500));
  }
})();
