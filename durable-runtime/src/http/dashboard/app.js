// The durable dashboard: a client of the JSON API beside it (`../api/`), with no framework and
// no build step. Instance data only ever reaches the DOM as text (text nodes, `textContent`,
// attribute values), never as markup.
'use strict';

(() => {
  const STATUSES = [
    'Running', 'Pending', 'Suspended', 'Completed', 'Failed', 'Terminated', 'Canceled',
    'ContinuedAsNew',
  ];
  const TERMINAL = new Set(['Completed', 'Failed', 'Terminated', 'Canceled']);
  const REFRESH_MS = 2000;
  const TOKEN_KEY = 'durable.dashboard.token';
  const LIVE_KEY = 'durable.dashboard.live';
  const PAGE_SIZES = [10, 25, 50, 100];
  const SINCE = [
    ['', 'Any time'], ['15m', 'Last 15 minutes'], ['1h', 'Last hour'], ['24h', 'Last 24 hours'],
    ['7d', 'Last 7 days'],
  ];
  const SINCE_MS = { '15m': 9e5, '1h': 3.6e6, '24h': 8.64e7, '7d': 6.048e8 };
  const MAX_TIMELINE_ROWS = 200;
  const REPLAY_MARKERS = new Set(['OrchestratorStarted', 'OrchestratorCompleted']);

  // ---- DOM helpers ------------------------------------------------------------------------

  /** An element with attributes, listeners (`onclick`), `class`, `dataset`, `style` (CSSOM). */
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'class') el.className = value;
      else if (key === 'dataset') Object.assign(el.dataset, value);
      else if (key === 'style') Object.assign(el.style, value);
      else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
      else if (value === true) el.setAttribute(key, '');
      else el.setAttribute(key, String(value));
    }
    append(el, children);
    return el;
  }

  function append(el, children) {
    for (const child of children.flat(Infinity)) {
      if (child === undefined || child === null || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;
  const instanceHref = (id) => '#/instances/' + enc(id);

  // ---- formatting -------------------------------------------------------------------------

  const pad = (n, width = 2) => String(n).padStart(width, '0');

  function formatTime(iso) {
    if (!iso) return '—';
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso;
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function formatDuration(ms) {
    if (!Number.isFinite(ms)) return '—';
    if (ms < 0) ms = 0;
    if (ms < 1000) return `${Math.round(ms)} ms`;
    const s = ms / 1000;
    if (s < 60) return `${s < 10 ? s.toFixed(2) : s.toFixed(1)} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} m ${Math.floor(s % 60)} s`;
    const hours = Math.floor(m / 60);
    if (hours < 48) return `${hours} h ${m % 60} m`;
    return `${Math.floor(hours / 24)} d ${hours % 24} h`;
  }

  function formatAgo(iso, now = Date.now()) {
    const t = Date.parse(iso);
    if (!Number.isFinite(t)) return '';
    const s = Math.max(0, (now - t) / 1000);
    if (s < 5) return 'just now';
    if (s < 60) return `${Math.floor(s)} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 172800) return `${Math.floor(s / 3600)} h ago`;
    return `${Math.floor(s / 86400)} days ago`;
  }

  function offset(ms) {
    return `+${(ms / 1000).toFixed(3)}s`;
  }

  /** A payload in one line, cut to `max` characters. */
  function short(value, max = 80) {
    if (value === null || value === undefined) return '–';
    const text = typeof value === 'string' ? JSON.stringify(value) : JSON.stringify(value);
    return text.length > max ? text.slice(0, max) + '…' : text;
  }

  function failureText(f) {
    if (!f) return '';
    return `${f.errorType || 'Error'}: ${f.errorMessage || ''}`;
  }

  /** Pretty JSON with spans per token kind, built from text nodes. */
  function jsonView(value) {
    const pre = h('pre', { class: 'json' });
    if (value === null || value === undefined) {
      pre.classList.add('json-empty');
      pre.textContent = 'null';
      return pre;
    }
    const text = JSON.stringify(value, null, 2);
    const token = /("(?:\\.|[^"\\])*")(\s*:)?|\b(true|false|null)\b|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;
    let last = 0;
    for (const match of text.matchAll(token)) {
      if (match.index > last) pre.append(text.slice(last, match.index));
      let kind = 'num';
      if (match[1]) kind = match[2] ? 'key' : 'str';
      else if (match[3]) kind = match[3] === 'null' ? 'null' : 'bool';
      pre.append(h('span', { class: 'j-' + kind }, match[1] || match[0]));
      if (match[2]) pre.append(match[2]);
      last = match.index + match[0].length;
    }
    pre.append(text.slice(last));
    return pre;
  }

  function badge(status) {
    return h('span', { class: 'badge badge-' + String(status).toLowerCase() }, status);
  }

  // ---- API --------------------------------------------------------------------------------

  const apiBase = new URL('../api/', document.baseURI);

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function token() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || '';
    } catch {
      return '';
    }
  }

  async function api(method, path, { query, body } = {}) {
    const url = new URL(path, apiBase);
    for (const [key, value] of Object.entries(query || {})) {
      if (value !== undefined && value !== null && value !== '') url.searchParams.set(key, value);
    }
    const headers = { Accept: 'application/json' };
    const secret = token();
    if (secret) headers.Authorization = 'Bearer ' + secret;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let response;
    try {
      response = await fetch(url, { method, headers, body, cache: 'no-store' });
    } catch (e) {
      connection(false, 'unreachable');
      throw new ApiError(0, `cannot reach the server (${e.message})`);
    }
    const text = await response.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (!response.ok) {
      const message = (data && data.error) || `${response.status} ${response.statusText}`;
      connection(response.status < 500, response.status === 503 ? 'sidecar unavailable' : null);
      if (response.status === 401) askForToken(message);
      throw new ApiError(response.status, message);
    }
    connection(true);
    return data;
  }

  function connection(ok, text) {
    const el = $('connection');
    el.classList.toggle('bad', !ok);
    el.classList.toggle('good', ok);
    $('connection-text').textContent = text || (ok ? 'connected' : 'error');
  }

  // ---- toasts and dialogs -----------------------------------------------------------------

  function toast(message, kind = 'info') {
    const el = h('div', { class: 'toast toast-' + kind }, message);
    $('toasts').append(el);
    setTimeout(() => el.classList.add('leaving'), 3500);
    setTimeout(() => el.remove(), 4000);
  }

  /**
   * Opens the dialog. `fields`: [{name, label, type: 'text'|'textarea'|'checkbox'|'password',
   * value, placeholder, hint}]; `submit(values)` may throw: its message is shown in the dialog.
   */
  function openDialog({ title, description, fields = [], confirm = 'OK', danger = false, submit }) {
    const dialog = $('dialog');
    $('dialog-title').textContent = title;
    $('dialog-description').textContent = description || '';
    $('dialog-description').hidden = !description;
    const error = $('dialog-error');
    error.hidden = true;
    const inputs = {};
    const rows = fields.map((field) => {
      const id = 'field-' + field.name;
      let input;
      if (field.type === 'textarea') {
        input = h('textarea', { id, rows: 5, placeholder: field.placeholder, spellcheck: 'false' });
        input.value = field.value || '';
      } else if (field.type === 'checkbox') {
        input = h('input', { id, type: 'checkbox' });
        input.checked = Boolean(field.value);
        inputs[field.name] = input;
        return h('label', { class: 'field field-check', for: id }, input, h('span', null, field.label));
      } else {
        input = h('input', {
          id, type: field.type || 'text', placeholder: field.placeholder, autocomplete: 'off',
          spellcheck: 'false',
        });
        input.value = field.value || '';
      }
      inputs[field.name] = input;
      return h('div', { class: 'field' },
        h('label', { for: id }, field.label),
        input,
        field.hint ? h('small', { class: 'muted' }, field.hint) : null);
    });
    $('dialog-fields').replaceChildren(...rows);
    const ok = $('dialog-confirm');
    ok.textContent = confirm;
    ok.className = 'btn ' + (danger ? 'btn-danger' : 'btn-primary');
    ok.disabled = false;
    const form = $('dialog-form');
    form.onsubmit = async (event) => {
      event.preventDefault();
      const values = {};
      for (const [name, input] of Object.entries(inputs)) {
        values[name] = input.type === 'checkbox' ? input.checked : input.value;
      }
      ok.disabled = true;
      try {
        await submit(values);
        dialog.close();
      } catch (e) {
        error.textContent = e.message;
        error.hidden = false;
      } finally {
        ok.disabled = false;
      }
    };
    $('dialog-cancel').onclick = () => dialog.close();
    dialog.showModal();
    const first = Object.values(inputs)[0];
    (first && first.type !== 'checkbox' ? first : ok).focus();
  }

  let askingForToken = false;

  function askForToken(message) {
    if (askingForToken) return;
    askingForToken = true;
    const dialog = $('dialog');
    if (dialog.open) dialog.close();
    openDialog({
      title: 'API token required',
      description: `${message}. The token is kept in this browser tab only (sessionStorage).`,
      fields: [{ name: 'token', label: 'Token', type: 'password', placeholder: 'the sidecar’s token' }],
      confirm: 'Use token',
      submit: async ({ token: value }) => {
        if (!value.trim()) throw new Error('enter the token');
        sessionStorage.setItem(TOKEN_KEY, value.trim());
        updateTokenButton();
        render();
      },
    });
    dialog.addEventListener('close', () => { askingForToken = false; }, { once: true });
  }

  function updateTokenButton() {
    $('forget-token').hidden = !token();
  }

  /** Runs an action, reports success and refreshes the view; errors go to the caller. */
  async function act(label, run) {
    try {
      await run();
      toast(label, 'success');
    } finally {
      refreshNow();
    }
  }

  // ---- views ------------------------------------------------------------------------------

  let currentView = null;
  let refreshing = false;

  function liveEnabled() {
    return $('live-toggle').checked;
  }

  async function refreshNow() {
    if (!currentView || refreshing) return;
    refreshing = true;
    try {
      await currentView.refresh();
    } finally {
      refreshing = false;
    }
  }

  setInterval(() => {
    if (liveEnabled() && !document.hidden && !$('dialog').open) refreshNow();
  }, REFRESH_MS);

  function render() {
    const hash = location.hash.replace(/^#/, '') || '/';
    const [path, search] = hash.split('?');
    let view;
    if (path.startsWith('/instances/')) {
      let id;
      try {
        id = decodeURIComponent(path.slice('/instances/'.length));
      } catch {
        id = path.slice('/instances/'.length);
      }
      view = detailView(id);
    } else {
      view = listView(new URLSearchParams(search || ''));
    }
    currentView = view;
    $('view').replaceChildren(view.element);
    $('nav-instances').classList.toggle('active', !path.startsWith('/instances/'));
    document.title = view.title + ' · Durable dashboard';
    refreshNow();
  }

  function errorBanner() {
    const el = h('p', { class: 'banner banner-error', hidden: true, role: 'alert' });
    return {
      element: el,
      show(message) {
        el.textContent = message;
        el.hidden = false;
      },
      clear() {
        el.hidden = true;
      },
    };
  }

  // ---- instance list ----------------------------------------------------------------------

  /** A page size from the URL: any whole number from 1 to 1000, else 25. */
  function pageSize(text) {
    const n = Number(text);
    return Number.isInteger(n) && n >= 1 && n <= 1000 ? n : 25;
  }

  function listView(params) {
    const state = {
      statuses: new Set((params.get('status') || '').split(',').filter((s) => STATUSES.includes(s))),
      prefix: params.get('prefix') || '',
      name: params.get('name') || '',
      since: SINCE_MS[params.get('since')] ? params.get('since') : '',
      pageSize: pageSize(params.get('pageSize')),
      tokens: [null],
      page: 0,
      createdFrom: null,
      next: null,
      lastBody: null,
    };
    const banner = errorBanner();
    const tbody = h('tbody');
    const pageInfo = h('span', { class: 'muted' });
    const prev = h('button', { type: 'button', class: 'btn btn-small', id: 'page-prev', onclick: () => go(-1) }, '‹ Previous');
    const next = h('button', { type: 'button', class: 'btn btn-small', id: 'page-next', onclick: () => go(1) }, 'Next ›');

    function syncHash() {
      const q = new URLSearchParams();
      if (state.statuses.size) q.set('status', [...state.statuses].join(','));
      if (state.prefix) q.set('prefix', state.prefix);
      if (state.name) q.set('name', state.name);
      if (state.since) q.set('since', state.since);
      if (state.pageSize !== 25) q.set('pageSize', state.pageSize);
      const text = q.toString();
      history.replaceState(null, '', '#/' + (text ? '?' + text : ''));
    }

    function filtersChanged() {
      state.tokens = [null];
      state.page = 0;
      state.createdFrom = null;
      syncHash();
      refreshNow();
    }

    function go(delta) {
      if (delta > 0 && !state.next) return;
      if (delta < 0 && state.page === 0) return;
      if (delta > 0) state.tokens[state.page + 1] = state.next;
      state.page += delta;
      refreshNow();
    }

    const chips = STATUSES.map((status) => {
      const input = h('input', {
        type: 'checkbox', value: status,
        onchange: () => {
          if (input.checked) state.statuses.add(status);
          else state.statuses.delete(status);
          filtersChanged();
        },
      });
      input.checked = state.statuses.has(status);
      return h('label', { class: 'chip chip-' + status.toLowerCase() }, input, h('span', null, status));
    });

    let typing;
    const textFilter = (key, label, placeholder) => {
      const input = h('input', {
        type: 'search', id: 'filter-' + key, placeholder, value: state[key], spellcheck: 'false',
        oninput: () => {
          clearTimeout(typing);
          typing = setTimeout(() => {
            state[key] = input.value.trim();
            filtersChanged();
          }, 300);
        },
      });
      return h('label', { class: 'filter' }, h('span', null, label), input);
    };

    const select = (label, options, value, onchange) => {
      const el = h('select', { onchange: () => onchange(el.value) },
        options.map(([v, text]) => h('option', { value: v, selected: String(v) === String(value) }, text)));
      return h('label', { class: 'filter' }, h('span', null, label), el);
    };

    const element = h('section', { class: 'page' },
      h('div', { class: 'page-head' },
        h('h1', null, 'Orchestration instances'),
        h('p', { class: 'muted' }, 'In the sidecar’s order (oldest first); the newest are on the last page.')),
      h('div', { class: 'card filters' },
        h('div', { class: 'chips', role: 'group', 'aria-label': 'Status' },
          h('span', { class: 'filters-label' }, 'Status'), chips),
        h('div', { class: 'filter-row' },
          textFilter('prefix', 'Instance ID starts with', 'e.g. order-'),
          textFilter('name', 'Name starts with', 'e.g. process_order'),
          select('Created', SINCE, state.since, (v) => {
            state.since = v;
            filtersChanged();
          }),
          select('Rows', [...new Set([...PAGE_SIZES, state.pageSize])].sort((a, b) => a - b)
            .map((n) => [n, String(n)]), state.pageSize, (v) => {
            state.pageSize = Number(v);
            filtersChanged();
          }))),
      banner.element,
      h('div', { class: 'card table-card' },
        h('table', { class: 'table', id: 'instances' },
          h('thead', null, h('tr', null,
            h('th', null, 'Instance ID'), h('th', null, 'Name'), h('th', null, 'Status'),
            h('th', null, 'Created'), h('th', null, 'Last updated'), h('th', { class: 'num' }, 'Duration'))),
          tbody),
        h('div', { class: 'pager' }, pageInfo, h('div', { class: 'spacer' }), prev, next)));

    function rows(instances) {
      if (!instances.length) {
        const filtered = state.statuses.size || state.prefix || state.name || state.since;
        return [h('tr', null, h('td', { colspan: 6, class: 'empty' },
          filtered ? 'No instances match these filters on this page.'
            : ['No orchestration instances yet. Start one with ', h('code', null, 'durable start NAME'),
              ' or ', h('code', null, 'POST /api/orchestrators/NAME'), '.']))];
      }
      const now = Date.now();
      return instances.map((i) => {
        const created = Date.parse(i.createdAt);
        const end = TERMINAL.has(i.runtimeStatus) ? Date.parse(i.lastUpdatedAt) : now;
        return h('tr', { dataset: { instanceId: i.instanceId, status: i.runtimeStatus } },
          h('td', { class: 'mono' }, h('a', { href: instanceHref(i.instanceId), class: 'instance-link' }, i.instanceId)),
          h('td', null, i.name),
          h('td', null, badge(i.runtimeStatus)),
          h('td', { title: i.createdAt || '' }, formatTime(i.createdAt)),
          h('td', { title: i.lastUpdatedAt || '' }, formatTime(i.lastUpdatedAt),
            h('span', { class: 'muted ago' }, formatAgo(i.lastUpdatedAt, now))),
          h('td', { class: 'num' }, formatDuration(end - created)));
      });
    }

    async function refresh() {
      if (state.page === 0 || !state.createdFrom) {
        state.createdFrom = state.since ? new Date(Date.now() - SINCE_MS[state.since]).toISOString() : null;
      }
      let body;
      try {
        body = await api('GET', 'instances', {
          query: {
            status: [...state.statuses].join(','),
            prefix: state.prefix,
            name: state.name,
            createdFrom: state.createdFrom,
            pageSize: state.pageSize,
            continuationToken: state.tokens[state.page],
          },
        });
      } catch (e) {
        banner.show(e.message);
        return;
      }
      banner.clear();
      state.next = body.continuationToken || null;
      prev.disabled = state.page === 0;
      next.disabled = !state.next;
      const first = state.page * state.pageSize + 1;
      pageInfo.textContent = body.instances.length
        ? `Page ${state.page + 1} · rows ${first}–${first + body.instances.length - 1}`
        : `Page ${state.page + 1}`;
      const text = JSON.stringify(body.instances);
      if (text !== state.lastBody) {
        state.lastBody = text;
        tbody.replaceChildren(...rows(body.instances));
      } else {
        // Same rows: only the clocks move. Updating in place keeps a click that is under way.
        const now = Date.now();
        for (const [index, i] of body.instances.entries()) {
          const row = tbody.rows[index];
          if (!row || TERMINAL.has(i.runtimeStatus)) continue;
          row.cells[4].lastChild.textContent = formatAgo(i.lastUpdatedAt, now);
          row.cells[5].textContent = formatDuration(now - Date.parse(i.createdAt));
        }
      }
    }

    return { element, refresh, title: 'Instances' };
  }

  // ---- instance detail --------------------------------------------------------------------

  /** The events paired into spans (activities, sub-orchestrations, timers) and markers. */
  function buildTimeline(events, status, now) {
    const time = (e) => (e.timestamp ? Date.parse(e.timestamp) : NaN);
    let start = Infinity;
    let last = -Infinity;
    for (const e of events) {
      const t = time(e);
      if (Number.isFinite(t)) {
        start = Math.min(start, t);
        last = Math.max(last, t);
      }
    }
    if (!Number.isFinite(start)) return null;
    const finished = TERMINAL.has(status);
    const end = finished ? last : Math.max(last, now);
    const spans = [];
    const byId = new Map();
    const markers = [];
    let orchestration = { name: '', start, end: finished ? last : null, result: status };
    const open = (kind, e, label, extra = {}) => {
      const span = { kind, label, eventId: e.eventId, start: time(e), end: null, state: 'pending', ...extra };
      spans.push(span);
      byId.set(e.eventId, span);
    };
    const close = (id, e, state, detail) => {
      const span = byId.get(id);
      if (!span || span.end !== null) return;
      span.end = time(e);
      span.state = state;
      span.detail = detail;
    };
    for (const e of events) {
      switch (e.eventType) {
        case 'ExecutionStarted':
          orchestration.name = e.name;
          orchestration.start = time(e);
          break;
        case 'TaskScheduled':
          open('activity', e, e.name);
          break;
        case 'SubOrchestrationInstanceCreated':
          open('sub', e, e.name, { instanceId: e.instanceId });
          break;
        case 'TimerCreated':
          open('timer', e, 'timer', { fireAt: Date.parse(e.fireAt) });
          break;
        case 'TaskCompleted':
        case 'SubOrchestrationInstanceCompleted':
          close(e.taskScheduledId, e, 'completed', short(e.result));
          break;
        case 'TaskFailed':
        case 'SubOrchestrationInstanceFailed':
          close(e.taskScheduledId, e, 'failed', failureText(e.failureDetails));
          break;
        case 'TimerFired':
          close(e.timerId, e, 'completed', 'fired');
          break;
        case 'EventRaised':
          markers.push({ at: time(e), kind: 'event', label: e.name, detail: short(e.input), eventId: e.eventId });
          break;
        case 'EventSent':
          markers.push({ at: time(e), kind: 'sent', label: `${e.name} → ${e.instanceId}`, detail: short(e.input) });
          break;
        case 'ExecutionSuspended':
        case 'ExecutionResumed':
        case 'ExecutionTerminated':
        case 'ExecutionRewound':
        case 'ContinueAsNew':
          markers.push({ at: time(e), kind: 'lifecycle', label: e.eventType.replace('Execution', ''), detail: short(e.input || e.reason) });
          break;
        case 'ExecutionCompleted':
          orchestration.end = time(e);
          orchestration.result = e.runtimeStatus;
          break;
        default:
          break;
      }
    }
    for (const span of spans) {
      if (span.end === null) {
        span.end = end;
        span.state = finished ? 'abandoned' : 'pending';
      }
    }
    if (orchestration.end === null) orchestration.end = end;
    return { start, end: Math.max(end, start + 1), spans, markers, orchestration };
  }

  /** Round steps for the time axis: about six ticks. */
  function ticks(span) {
    const raw = span / 6;
    const pow = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].map((m) => m * pow).find((s) => s >= raw) || raw;
    const out = [];
    for (let t = 0; t <= span + 1e-9; t += step) out.push(t);
    return out;
  }

  function tickLabel(ms, span) {
    if (span < 2000) return `${Math.round(ms)} ms`;
    if (span < 120000) return `${(ms / 1000).toFixed(ms % 1000 ? 1 : 0)} s`;
    if (span < 7.2e6) return `${(ms / 60000).toFixed(ms % 60000 ? 1 : 0)} min`;
    return `${(ms / 3.6e6).toFixed(1)} h`;
  }

  function timelineView(timeline, onPick) {
    const { start, end, spans, markers, orchestration } = timeline;
    const total = end - start;
    const pct = (t) => `${Math.min(100, Math.max(0, ((t - start) / total) * 100))}%`;
    const width = (a, b) => `${Math.max(0, ((b - a) / total) * 100)}%`;
    const grid = h('div', { class: 'tl-grid', 'aria-hidden': 'true' },
      ticks(total).map((t) => h('div', { class: 'tl-gridline', style: { left: pct(start + t) } })));
    const axis = h('div', { class: 'tl-row tl-axis' },
      h('div', { class: 'tl-label' }),
      h('div', { class: 'tl-track' },
        ticks(total).map((t) => h('span', { class: 'tl-tick', style: { left: pct(start + t) } }, tickLabel(t, total)))));

    // The caption goes after the bar, before it when the bar ends near the right edge, or
    // inside it when the bar is wide.
    const bar = (kind, state, from, to, label, title, extra = {}) => {
      const startFrac = (from - start) / total;
      const endFrac = (to - start) / total;
      let caption;
      if (endFrac <= 0.8) {
        caption = h('span', { class: 'tl-caption', style: { left: `calc(${pct(to)} + 6px)` } }, label);
      } else if (startFrac >= 0.25) {
        caption = h('span', { class: 'tl-caption tl-caption-before', style: { right: `calc(${100 - startFrac * 100}% + 6px)` } }, label);
      } else {
        caption = h('span', { class: 'tl-caption tl-caption-inside', style: { left: `calc(${pct(from)} + 8px)` } }, label);
      }
      return [
        h('div', {
          class: `tl-bar kind-${kind} state-${state}`,
          style: { left: pct(from), width: width(from, to) },
          title,
          ...extra,
        }),
        caption,
      ];
    };

    const rows = [];
    rows.push(h('div', { class: 'tl-row tl-row-main' },
      h('div', { class: 'tl-label', title: orchestration.name }, h('span', { class: 'tl-icon kind-orchestration' }), orchestration.name || 'orchestration'),
      h('div', { class: 'tl-track' },
        bar('orchestration', String(orchestration.result).toLowerCase(), orchestration.start, orchestration.end,
          `${orchestration.result} · ${formatDuration(orchestration.end - orchestration.start)}`,
          `${orchestration.name}: ${orchestration.result}, ${formatDuration(orchestration.end - orchestration.start)}`))));
    if (markers.length) {
      rows.push(h('div', { class: 'tl-row tl-row-markers' },
        h('div', { class: 'tl-label' }, h('span', { class: 'tl-icon kind-event' }), 'events'),
        h('div', { class: 'tl-track' }, markers.map((m) => h('div', {
          class: `tl-marker marker-${m.kind}${(m.at - start) / total > 0.75 ? ' tl-marker-end' : ''}`,
          style: { left: pct(m.at) },
          title: `${m.label} at ${offset(m.at - start)}${m.detail && m.detail !== '–' ? '\n' + m.detail : ''}`,
          dataset: { label: m.label },
        }, h('span', { class: 'tl-marker-label' }, m.label))))));
    }
    const kindName = { activity: 'activity', sub: 'sub-orchestration', timer: 'timer' };
    for (const span of spans.slice(0, MAX_TIMELINE_ROWS)) {
      const took = span.end - span.start;
      const stateText = { completed: span.kind === 'timer' ? 'fired' : 'completed', failed: 'failed', pending: 'running', abandoned: 'not finished' }[span.state];
      let label = span.state === 'pending' ? `running ${formatDuration(took)}` : formatDuration(took);
      if (span.kind === 'timer' && span.state === 'pending' && Number.isFinite(span.fireAt)) {
        label = `fires at ${formatTime(new Date(span.fireAt).toISOString())}`;
      }
      if (span.state === 'failed') label += ' · failed';
      const title = [
        `${span.label} (${kindName[span.kind]} #${span.eventId})`,
        `scheduled ${offset(span.start - start)}`,
        `${stateText} ${offset(span.end - start)} (${formatDuration(took)})`,
        span.instanceId ? `instance ${span.instanceId}` : '',
        span.detail ? String(span.detail) : '',
      ].filter(Boolean).join('\n');
      const labelEl = span.kind === 'sub' && span.instanceId
        ? h('a', { href: instanceHref(span.instanceId), title: span.instanceId }, span.label)
        : h('span', { title: span.label }, span.label);
      rows.push(h('div', { class: 'tl-row', dataset: { kind: span.kind, state: span.state } },
        h('div', { class: 'tl-label' }, h('span', { class: 'tl-icon kind-' + span.kind }), labelEl,
          h('span', { class: 'tl-id' }, `#${span.eventId}`)),
        h('div', { class: 'tl-track' },
          bar(span.kind, span.state, span.start, span.end, label, title, {
            role: 'button', tabindex: 0,
            onclick: () => onPick(span.eventId),
          }))));
    }
    const more = spans.length > MAX_TIMELINE_ROWS
      ? h('p', { class: 'muted tl-more' }, `Showing the first ${MAX_TIMELINE_ROWS} of ${spans.length} tasks.`)
      : null;
    const legend = h('div', { class: 'tl-legend' },
      [['activity', 'Activity'], ['sub', 'Sub-orchestration'], ['timer', 'Timer'], ['failed', 'Failed'], ['pending', 'Running']]
        .map(([k, text]) => h('span', null, h('span', { class: 'tl-swatch swatch-' + k }), text)));
    return h('div', { class: 'timeline', id: 'timeline' },
      h('div', { class: 'tl-body' }, grid, axis, rows), more, legend);
  }

  function eventSummary(e, names) {
    const task = (id) => names.get(id) || '';
    switch (e.eventType) {
      case 'ExecutionStarted':
        return `${e.name}${e.version ? ' v' + e.version : ''} · input ${short(e.input)}`;
      case 'ExecutionCompleted':
        return `${e.runtimeStatus} · ${e.failureDetails ? failureText(e.failureDetails) : 'result ' + short(e.result)}`;
      case 'ExecutionTerminated':
        return `output ${short(e.input)}`;
      case 'TaskScheduled':
        return `${e.name} · input ${short(e.input)}`;
      case 'TaskCompleted':
      case 'SubOrchestrationInstanceCompleted':
        return `#${e.taskScheduledId} ${task(e.taskScheduledId)} → ${short(e.result)}`;
      case 'TaskFailed':
      case 'SubOrchestrationInstanceFailed':
        return `#${e.taskScheduledId} ${task(e.taskScheduledId)} ✗ ${failureText(e.failureDetails)}`;
      case 'SubOrchestrationInstanceCreated':
        return `${e.name} as ${e.instanceId} · input ${short(e.input)}`;
      case 'TimerCreated':
        return `fires at ${formatTime(e.fireAt)}`;
      case 'TimerFired':
        return `#${e.timerId}`;
      case 'EventRaised':
        return `${e.name} · ${short(e.input)}`;
      case 'EventSent':
        return `${e.name} to ${e.instanceId} · ${short(e.input)}`;
      case 'ExecutionSuspended':
      case 'ExecutionResumed':
      case 'ContinueAsNew':
        return e.input === null || e.input === undefined ? '' : short(e.input);
      case 'ExecutionRewound':
        return e.reason || '';
      default:
        return '';
    }
  }

  function detailView(id) {
    const banner = errorBanner();
    const title = h('h1', { class: 'mono instance-title' }, id);
    const statusSlot = h('span', { class: 'title-status' });
    const nameSlot = h('span', { class: 'muted' });
    const actions = h('div', { class: 'actions', id: 'actions' });
    const overview = h('dl', { class: 'facts' });
    const payloads = h('div', { class: 'payloads' });
    const failure = h('div', { class: 'card failure', hidden: true });
    const timelineSlot = h('div', { class: 'timeline-slot' }, h('p', { class: 'muted' }, 'Loading history…'));
    const historyBody = h('tbody');
    const historyCount = h('span', { class: 'muted' });
    const showReplay = h('input', { type: 'checkbox', onchange: () => drawHistory() });
    const expanded = new Set();
    let lastState = null;
    let lastHistory = null;
    let events = [];
    let gone = false;

    const element = h('section', { class: 'page' },
      h('a', { href: '#/', class: 'back' }, '← All instances'),
      h('div', { class: 'page-head detail-head' },
        h('div', null, title, h('div', { class: 'subtitle' }, statusSlot, nameSlot)),
        actions),
      banner.element,
      h('div', { class: 'grid' },
        h('div', { class: 'card' }, h('h2', null, 'Overview'), overview),
        payloads),
      failure,
      h('div', { class: 'card' },
        h('div', { class: 'card-head' }, h('h2', null, 'Timeline'),
          h('span', { class: 'muted' }, 'Activities, sub-orchestrations and timers from scheduled to done; click a bar for its events.')),
        timelineSlot),
      h('div', { class: 'card table-card' },
        h('div', { class: 'card-head' }, h('h2', null, 'History'), historyCount, h('div', { class: 'spacer' }),
          h('label', { class: 'inline-check' }, showReplay, 'Show OrchestratorStarted/Completed')),
        h('table', { class: 'table history', id: 'history' },
          h('thead', null, h('tr', null,
            h('th', { class: 'num' }, '#'), h('th', null, 'Time'), h('th', null, 'Event'), h('th', null, 'Details'))),
          historyBody)));

    const path = `instances/${enc(id)}`;

    const ACTIONS = [
      {
        id: 'raise', label: 'Raise event', enabled: (s) => !TERMINAL.has(s),
        run: () => openDialog({
          title: 'Raise an event',
          description: `Sends an external event to ${id}.`,
          fields: [
            { name: 'name', label: 'Event name', placeholder: 'e.g. approval' },
            { name: 'data', label: 'Data (JSON, optional)', type: 'textarea', placeholder: '{"approved": true}' },
          ],
          confirm: 'Raise event',
          submit: async ({ name, data }) => {
            if (!name.trim()) throw new Error('enter the event name');
            const body = parseJson(data);
            await act(`Event '${name.trim()}' raised`, () =>
              api('POST', `${path}/raiseEvent/${enc(name.trim())}`, { body }));
          },
        }),
      },
      {
        id: 'suspend', label: 'Suspend', enabled: (s) => s === 'Running' || s === 'Pending',
        run: () => openDialog({
          title: 'Suspend instance',
          description: 'A suspended instance keeps its events but runs no further until resumed.',
          fields: [{ name: 'reason', label: 'Reason (optional)' }],
          confirm: 'Suspend',
          submit: ({ reason }) => act('Suspend requested', () => api('POST', `${path}/suspend`, { query: { reason } })),
        }),
      },
      {
        id: 'resume', label: 'Resume', enabled: (s) => s === 'Suspended',
        run: () => act('Resume requested', () => api('POST', `${path}/resume`))
          .catch((e) => toast(e.message, 'error')),
      },
      {
        id: 'terminate', label: 'Terminate', danger: true, enabled: (s) => !TERMINAL.has(s),
        run: () => openDialog({
          title: 'Terminate instance',
          description: `Stops ${id} for good: it becomes Terminated and runs no further.`,
          fields: [
            { name: 'reason', label: 'Reason (optional, recorded as the output)' },
            { name: 'recursive', label: 'Also terminate its sub-orchestrations', type: 'checkbox', value: true },
          ],
          confirm: 'Terminate',
          danger: true,
          submit: ({ reason, recursive }) => act('Terminate requested', () => api('POST', `${path}/terminate`, {
            query: { recursive: String(recursive) },
            body: reason.trim() ? JSON.stringify(reason.trim()) : undefined,
          })),
        }),
      },
      {
        id: 'rewind', label: 'Rewind', enabled: (s) => s === 'Failed',
        run: () => openDialog({
          title: 'Rewind instance',
          description: 'Runs the failed tasks again as if they had not failed; the instance continues from there.',
          fields: [{ name: 'reason', label: 'Reason (optional)' }],
          confirm: 'Rewind',
          submit: ({ reason }) => act('Rewind requested', () => api('POST', `${path}/rewind`, { query: { reason } })),
        }),
      },
      {
        id: 'restart', label: 'Restart', enabled: () => true,
        run: () => {
          const finished = lastState && TERMINAL.has(lastState.runtimeStatus);
          openDialog({
            title: 'Restart instance',
            description: 'Starts the orchestration again with its original input.',
            fields: [{
              name: 'fresh', label: 'Under a new instance ID', type: 'checkbox', value: !finished,
            }],
            confirm: 'Restart',
            submit: async ({ fresh }) => {
              if (!fresh && !finished) throw new Error('a running instance can only be restarted under a new ID');
              const started = await api('POST', `${path}/restart`, { query: { newInstanceId: String(fresh) } });
              toast(`Restarted as ${started.id}`, 'success');
              if (started.id !== id) location.hash = instanceHref(started.id);
              else refreshNow();
            },
          });
        },
      },
      {
        id: 'purge', label: 'Purge', danger: true, enabled: (s) => TERMINAL.has(s),
        run: () => openDialog({
          title: 'Purge instance',
          description: `Deletes ${id} and its history. This cannot be undone.`,
          fields: [{ name: 'recursive', label: 'Also purge its sub-orchestrations', type: 'checkbox', value: false }],
          confirm: 'Purge',
          danger: true,
          submit: async ({ recursive }) => {
            await api('DELETE', path, { query: { recursive: String(recursive) } });
            toast(`Purged ${id}`, 'success');
            location.hash = '#/';
          },
        }),
      },
    ];
    const buttons = ACTIONS.map((a) => h('button', {
      type: 'button', class: 'btn' + (a.danger ? ' btn-danger-outline' : ''), dataset: { action: a.id },
      disabled: true, onclick: () => a.run(),
    }, a.label));
    actions.append(...buttons);

    function parseJson(text) {
      if (!text.trim()) return undefined;
      try {
        return JSON.stringify(JSON.parse(text));
      } catch (e) {
        throw new Error(`the data is not valid JSON: ${e.message}`);
      }
    }

    function fact(label, ...value) {
      return [h('dt', null, label), h('dd', null, ...value)];
    }

    function copyButton(text) {
      // The clipboard API exists only on secure origins (localhost counts; plain http hosts do not).
      if (!navigator.clipboard) return null;
      return h('button', {
        type: 'button', class: 'btn btn-ghost btn-tiny', title: 'Copy',
        onclick: () => navigator.clipboard.writeText(text).then(() => toast('Copied')),
      }, 'Copy');
    }

    function drawState(s) {
      statusSlot.replaceChildren(badge(s.runtimeStatus));
      nameSlot.textContent = s.name;
      buttons.forEach((b, i) => {
        const ok = ACTIONS[i].enabled(s.runtimeStatus);
        b.disabled = !ok;
        b.title = ok ? '' : `not available while ${s.runtimeStatus}`;
      });
      const now = Date.now();
      const end = TERMINAL.has(s.runtimeStatus) ? Date.parse(s.lastUpdatedAt) : now;
      overview.replaceChildren(
        ...fact('Instance ID', h('span', { class: 'mono' }, s.instanceId), copyButton(s.instanceId)),
        ...fact('Name', s.name),
        ...fact('Status', badge(s.runtimeStatus)),
        ...fact('Created', formatTime(s.createdAt), h('span', { class: 'muted ago' }, formatAgo(s.createdAt, now))),
        ...fact('Last updated', formatTime(s.lastUpdatedAt), h('span', { class: 'muted ago' }, formatAgo(s.lastUpdatedAt, now))),
        ...fact(TERMINAL.has(s.runtimeStatus) ? 'Ran for' : 'Running for', formatDuration(end - Date.parse(s.createdAt))));
      payloads.replaceChildren(
        h('div', { class: 'card' }, h('h2', null, 'Input'), jsonView(s.input)),
        h('div', { class: 'card' }, h('h2', null, 'Output'), jsonView(s.output)),
        h('div', { class: 'card' }, h('h2', null, 'Custom status'), jsonView(s.customStatus)));
      const f = s.failureDetails;
      failure.hidden = !f;
      if (f) {
        failure.replaceChildren(
          h('h2', null, 'Failure'),
          h('p', { class: 'failure-message' }, h('strong', null, f.errorType || 'Error'), ': ', f.errorMessage || ''),
          f.stackTrace ? h('pre', { class: 'stack' }, f.stackTrace) : null);
      }
    }

    /** Highlights the history rows of one span: its scheduling event and its completion. */
    function pick(scheduledId) {
      let first = null;
      for (const row of historyBody.querySelectorAll('tr[data-index]')) {
        const e = events[Number(row.dataset.index)];
        const hit = Boolean(e) && ((e.eventId === scheduledId && /Scheduled|Created/.test(e.eventType)) ||
          e.taskScheduledId === scheduledId || e.timerId === scheduledId);
        row.classList.toggle('picked', hit);
        if (hit && !first) first = row;
      }
      if (first) first.scrollIntoView({ block: 'center', behavior: 'smooth' });
    }

    function drawHistory() {
      const names = new Map();
      for (const e of events) {
        if (e.eventType === 'TaskScheduled' || e.eventType === 'SubOrchestrationInstanceCreated') names.set(e.eventId, e.name);
      }
      const start = events.reduce((min, e) => {
        const t = Date.parse(e.timestamp);
        return Number.isFinite(t) && !(t >= min) ? t : min;
      }, NaN);
      const rows = [];
      let shown = 0;
      events.forEach((e, index) => {
        if (!showReplay.checked && REPLAY_MARKERS.has(e.eventType)) return;
        shown += 1;
        const at = Date.parse(e.timestamp);
        const row = h('tr', {
          dataset: { index, eventType: e.eventType }, class: 'event-row',
          onclick: () => {
            if (expanded.has(index)) expanded.delete(index);
            else expanded.add(index);
            drawHistory();
          },
        },
        h('td', { class: 'num mono' }, e.eventId >= 0 ? String(e.eventId) : ''),
        h('td', { class: 'mono', title: e.timestamp || '' }, Number.isFinite(at - start) ? offset(at - start) : '?'),
        h('td', null, h('span', { class: 'event-type type-' + eventClass(e) }, e.eventType)),
        h('td', { class: 'details' }, eventSummary(e, names)));
        rows.push(row);
        if (expanded.has(index)) {
          rows.push(h('tr', { class: 'event-raw' }, h('td', { colspan: 4 }, jsonView(e))));
        }
      });
      if (!rows.length) rows.push(h('tr', null, h('td', { colspan: 4, class: 'empty' }, 'No history events.')));
      historyCount.textContent = `${shown} of ${events.length} events`;
      historyBody.replaceChildren(...rows);
    }

    function eventClass(e) {
      const type = e.eventType;
      if (type === 'ExecutionCompleted') return e.runtimeStatus === 'Completed' ? 'good' : 'bad';
      if (/Failed|Terminated/.test(type)) return 'bad';
      if (/Completed|Fired/.test(type)) return 'good';
      if (/Scheduled|Created|Started/.test(type)) return 'start';
      if (/Raised|Sent|Signaled|Called/.test(type)) return 'event';
      return 'other';
    }

    async function refresh() {
      if (gone) return;
      let state;
      try {
        state = await api('GET', path);
      } catch (e) {
        if (e.status === 404) {
          gone = true;
          banner.show(`No instance '${id}' (it may have been purged).`);
          buttons.forEach((b) => { b.disabled = true; });
        } else {
          banner.show(e.message);
        }
        return;
      }
      banner.clear();
      const stateText = JSON.stringify(state);
      if (stateText !== lastState?.text || !TERMINAL.has(state.runtimeStatus)) {
        drawState(state);
      }
      lastState = { ...state, text: stateText };
      let history;
      try {
        history = await api('GET', `${path}/history`);
      } catch (e) {
        timelineSlot.replaceChildren(h('p', { class: 'banner banner-error' }, `History unavailable: ${e.message}`));
        return;
      }
      const historyText = JSON.stringify(history.events);
      const running = !TERMINAL.has(state.runtimeStatus);
      if (historyText !== lastHistory) {
        lastHistory = historyText;
        events = history.events;
        drawHistory();
      } else if (!running) {
        return;
      }
      const timeline = buildTimeline(events, state.runtimeStatus, Date.now());
      timelineSlot.replaceChildren(timeline
        ? timelineView(timeline, pick)
        : h('p', { class: 'muted' }, 'No history yet.'));
    }

    return { element, refresh, title: id };
  }

  // ---- start ------------------------------------------------------------------------------

  function start() {
    const live = $('live-toggle');
    let stored = null;
    try {
      stored = localStorage.getItem(LIVE_KEY);
    } catch {
      stored = null;
    }
    live.checked = stored !== 'off';
    live.addEventListener('change', () => {
      try {
        localStorage.setItem(LIVE_KEY, live.checked ? 'on' : 'off');
      } catch {
        // Private windows may refuse storage; the toggle still works for this page.
      }
      if (live.checked) refreshNow();
    });
    $('refresh-button').addEventListener('click', () => refreshNow());
    $('forget-token').addEventListener('click', () => {
      sessionStorage.removeItem(TOKEN_KEY);
      updateTokenButton();
      toast('Token forgotten');
      render();
    });
    updateTokenButton();
    window.addEventListener('hashchange', render);
    render();
  }

  start();
})();
