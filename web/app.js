// imgsearch web UI: Search, Upload, Browse, Index and an image's detail dialog, over the public
// HTTP API (api.js). Plain DOM, no framework; user text only ever goes into textContent.
import { api, ApiError, forgetKey, imageUrl, qs, rememberKey, storedKey, thumbUrl, uploadImage } from './api.js';

const $ = (id) => document.getElementById(id);

// h('p', {className: 'x', onclick: f}, 'text', child) → element
function h(tag, props = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k in el && !k.includes('-')) el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat()) if (kid !== null && kid !== undefined && kid !== false) el.append(kid);
  return el;
}

const fmtBytes = (n) => n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KB` : `${(n / 1048576).toFixed(1)} MB`;
const fmtPct = (x) => `${(Math.max(0, Math.min(1, x)) * 100).toFixed(1)}%`;
const fmtSecs = (ms) => `${(ms / 1000).toFixed(1)} s`;
const fmtTook = (ms) => (ms < 1000 ? `${Math.round(ms)} ms` : fmtSecs(ms));

let toastTimer = 0;
function toast(msg, kind = '') {
  const t = $('toast');
  t.textContent = msg;
  t.className = `toast show ${kind}`;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.className = 'toast'; }, 4000);
}

function setStatus(id, msg, kind = '') {
  const el = $(id);
  el.textContent = msg;
  el.className = `status ${kind}`;
}

// ---- JSON fields: parse as the user types, show the error under the field ----

// {ok, value} for a field that must be empty or a JSON object.
function parseObjectField(text) {
  const t = text.trim();
  if (!t) return { ok: true, value: null };
  let v;
  try {
    v = JSON.parse(t);
  } catch (e) {
    return { ok: false, error: `Not valid JSON: ${e.message}` };
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return { ok: false, error: 'Must be a JSON object, like {"key": "value"}' };
  return { ok: true, value: v };
}

function setFieldError(fieldId, msg) {
  const err = $(`${fieldId}-error`);
  err.textContent = msg || '';
  err.hidden = !msg;
  $(fieldId).setAttribute('aria-invalid', msg ? 'true' : 'false');
}

// Validates on every keystroke; returns a function giving the current {ok, value}.
function jsonField(fieldId, onChange) {
  const el = $(fieldId);
  const check = () => {
    const r = parseObjectField(el.value);
    setFieldError(fieldId, r.ok ? '' : r.error);
    return r;
  };
  el.addEventListener('input', () => { const r = check(); if (onChange) onChange(r); });
  return check;
}

// A server 400 about the filter goes next to the filter field, anything else to the status line.
function showError(e, filterField, statusId) {
  const msg = e instanceof ApiError ? e.detail : String(e);
  if (filterField && e instanceof ApiError && e.status === 400 && /^filter\b/.test(msg)) {
    setFieldError(filterField, msg);
    setStatus(statusId, 'The filter was refused: see above.', 'error');
  } else {
    setStatus(statusId, msg, 'error');
  }
}

// ---- metadata shown readably: "owner.city  Oslo" ----

function flatten(obj, prefix = '', out = []) {
  for (const [k, v] of Object.entries(obj || {})) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length) flatten(v, key, out);
    else out.push([key, typeof v === 'string' ? v : JSON.stringify(v)]);
  }
  return out;
}

function metaList(data, max = 4) {
  const rows = flatten(data);
  if (!rows.length) return h('p', { className: 'meta-empty muted' }, 'no metadata');
  const dl = h('dl', { className: 'meta' });
  for (const [k, v] of rows.slice(0, max)) {
    const val = v.length > 60 ? `${v.slice(0, 57)}…` : v;
    dl.append(h('div', {}, h('dt', {}, k), h('dd', { title: v }, val)));
  }
  if (rows.length > max) dl.append(h('div', { className: 'more muted' }, `+${rows.length - max} more`));
  return dl;
}

// ---- cards ----

function thumbLink(id, name, size) {
  return h('a', { className: 'thumb', href: `#/image/${id}`, 'aria-label': `Open ${name} (#${id})` },
    h('img', { src: thumbUrl(id, size), alt: name, loading: 'lazy', decoding: 'async' }));
}

// Similarity is 1 − cosine distance of the whitened embeddings (README, "Reading the similarity"):
// unrelated pictures sit near 0 % (a distance near 1, sometimes above: shown as 0 %), and in the
// copy-detection benchmark three quarters of edited copies of a picture scored 77 % or more while
// fewer than one in twenty different pictures did; hence the "same picture?" mark from 80 %.
const COPY_LIKELY = 0.8;

function simBar(dist) {
  const sim = Math.max(0, 1 - dist);
  const bar = h('span', { className: 'bar' }, h('span', {}));
  bar.firstChild.style.width = fmtPct(sim);
  return h('p', { className: 'sim', title: `cosine distance ${dist.toFixed(4)}` }, bar,
    h('span', { className: 'pct' }, fmtPct(sim)), h('span', { className: 'visually-hidden' }, ' similar'));
}

// A badge on the thumbnail when the similarity says "most likely the same picture".
function copyMark(dist) {
  return 1 - dist >= COPY_LIKELY
    ? h('span', { className: 'copy-mark', title: 'most likely the same picture, edited or re-encoded' }, 'same picture?')
    : null;
}

function resultCard(hit, rank) {
  return h('li', { className: 'card', dataset: { id: hit.id, name: hit.name } },
    h('span', { className: 'rank' }, h('span', { className: 'visually-hidden' }, 'Rank '), String(rank)),
    copyMark(hit.dist),
    thumbLink(hit.id, hit.name),
    h('div', { className: 'card-body' },
      simBar(hit.dist),
      h('p', { className: 'name', title: hit.name }, hit.name, h('span', { className: 'muted id' }, ` #${hit.id}`)),
      metaList(hit.data),
      h('button', { type: 'button', className: 'small', dataset: { similar: hit.id }, onclick: () => similarTo(hit.id, hit.name) }, 'More like this')));
}

// an image found by what it shows: its probability instead of a similarity
function labelCard(row, rank) {
  const pct = Math.round((row.label_score || 0) * 100);
  return h('li', { className: 'card', dataset: { id: row.id, name: row.name } },
    h('span', { className: 'rank' }, h('span', { className: 'visually-hidden' }, 'Rank '), String(rank)),
    thumbLink(row.id, row.name),
    h('div', { className: 'card-body' },
      h('p', { className: 'label-score', title: 'How probable the network finds it that the image shows this' }, `${pct} % probable`),
      h('p', { className: 'name', title: row.name }, row.name, h('span', { className: 'muted id' }, ` #${row.id}`)),
      metaList(row.data),
      h('button', { type: 'button', className: 'small', dataset: { similar: row.id }, onclick: () => similarTo(row.id, row.name) }, 'More like this')));
}

function galleryCard(row) {
  return h('li', { className: 'card', dataset: { id: row.id, name: row.name } },
    thumbLink(row.id, row.name),
    h('div', { className: 'card-body' },
      h('p', { className: 'name', title: row.name }, row.name, h('span', { className: 'muted id' }, ` #${row.id}`)),
      metaList(row.data, 3)));
}

// ---- header summary: count and health ----

let statusEndpoint = null; // unknown until asked; false when the server has no /index/status

async function indexStatus() {
  if (statusEndpoint === false) return null;
  try {
    const s = (await api('GET', '/index/status')).result;
    statusEndpoint = true;
    return s;
  } catch (e) {
    if (e instanceof ApiError && (e.status === 404 || e.status === 405)) statusEndpoint = false;
    return null;
  }
}

async function imageCount() {
  const s = await indexStatus();
  if (s && Number.isInteger(s.count)) return { count: s.count, status: s };
  return { count: (await api('GET', '/images?limit=1')).total, status: s };
}

async function refreshSummary() {
  const pill = $('summary');
  try {
    const [{ count }, health] = await Promise.all([imageCount(), api('GET', '/index/health')]);
    $('summary-text').textContent = `${count} image${count === 1 ? '' : 's'} · ${health.result ? 'healthy' : 'needs reindex'}`;
    $('search-empty').hidden = count > 0;
    pill.dataset.state = health.result ? 'ok' : 'warn';
    if (!performance.getEntriesByName('imgsearch-summary').length) performance.mark('imgsearch-summary');
  } catch (e) {
    const locked = e instanceof ApiError && (e.status === 401 || e.status === 403);
    $('summary-text').textContent = locked ? 'API key needed' : 'server unreachable';
    pill.dataset.state = 'error';
  }
}

// ---- Search ----

const search = { file: null, similar: null, previewUrl: null, hits: [], seq: 0 };
const checkSearchFilter = jsonField('search-filter');

function setQueryFile(file) {
  if (!file) return;
  if (search.previewUrl) URL.revokeObjectURL(search.previewUrl);
  search.file = file;
  search.similar = null;
  search.previewUrl = URL.createObjectURL(file);
  showQuery(search.previewUrl, `Query: ${file.name || 'pasted image'}`, file.name || 'pasted image');
  runSearch();
}

function similarTo(id, name) {
  search.file = null;
  search.similar = { id, name };
  showQuery(thumbUrl(id, 480), `More like #${id} ${name}`, name);
  if (currentTab !== 'search') location.hash = '#/search';
  runSearch();
}

function showQuery(src, caption, name) {
  const img = $('query-img');
  img.src = src;
  img.alt = `Query image: ${name}`;
  img.hidden = false;
  $('search-drop').classList.add('has-query');
  $('query-caption').textContent = caption;
  $('search-go').disabled = false;
}

async function runSearch() {
  const label = $('search-label').value.trim();
  setFieldError('search-label', '');
  if (!search.file && !search.similar && !label) {
    setStatus('search-status', 'Choose, drop or paste an image, or type what the images should show.', 'error');
    return;
  }
  const f = checkSearchFilter();
  if (!f.ok) {
    setStatus('search-status', 'Fix the filter first.', 'error');
    $('search-filter').focus();
    return;
  }
  const kEl = $('search-k');
  const k = Math.max(1, Math.min(1000, parseInt(kEl.value, 10) || 12));
  kEl.value = k;
  // similarity shown is 1 − cosine distance, so a minimum similarity is a maximum distance
  const minEl = $('search-min');
  const min = minEl.value === '' ? null : Math.max(0, Math.min(100, Number(minEl.value)));
  if (min !== null) minEl.value = min;
  // 0 % means no minimum: similarities below 0 are shown as 0 %, and must not be cut either
  const max_dist = !min ? undefined : (1 - min / 100).toFixed(4);
  const query = f.value ? JSON.stringify(f.value) : '';
  const seq = ++search.seq;
  setStatus('search-status', 'Searching…', 'busy');
  $('search-results').setAttribute('aria-busy', 'true');
  const t0 = performance.now();
  try {
    let body;
    const byLabel = !search.file && !search.similar;
    const shows = label || undefined;
    if (search.file) {
      const form = new FormData();
      form.append('image', search.file, search.file.name || 'pasted.png');
      if (query) form.append('query', query);
      body = await api('POST', `/image/search${qs({ k, max_dist, label: shows })}`, form);
    } else if (search.similar) {
      body = await api('GET', `/image/${search.similar.id}/similar${qs({ k, query, max_dist, label: shows })}`);
    } else {
      // no example image: the images showing it, most probable first
      body = query
        ? await api('POST', `/data/query${qs({ limit: k, label })}`, f.value)
        : await api('GET', `/images${qs({ limit: k, label })}`);
    }
    if (seq !== search.seq) return;
    search.hits = body.result;
    search.byLabel = byLabel;
    renderHits();
    const n = search.hits.length;
    const within = !min || byLabel ? '' : ` at least ${min} % similar`;
    const showing = label ? ` showing “${label}”` : '';
    const of = byLabel && body.total > n ? ` (the ${n} most probable of ${body.total})` : '';
    setStatus('search-status', `${n} result${n === 1 ? '' : 's'}${showing}${query ? ' matching the filter' : ''}${within}${of} in ${Math.round(performance.now() - t0)} ms.`, 'ok');
  } catch (e) {
    if (seq !== search.seq) return;
    search.hits = [];
    renderHits();
    if (e instanceof ApiError && e.status === 400 && /^label /.test(e.detail || '')) {
      setFieldError('search-label', e.detail);
      setStatus('search-status', 'Try another word.', 'error');
    } else showError(e, 'search-filter', 'search-status');
  } finally {
    if (seq === search.seq) $('search-results').removeAttribute('aria-busy');
  }
}

function renderHits() {
  const list = $('search-results');
  list.replaceChildren(...search.hits.map((hit, i) => (search.byLabel ? labelCard(hit, i + 1) : resultCard(hit, i + 1))));
  if (!search.hits.length && (search.file || search.similar || search.byLabel)) {
    list.append(h('li', { className: 'empty muted' }, 'No images match. ', h('a', { href: '#/upload' }, 'Upload some'), ' or loosen the filter or the minimum similarity.'));
  }
}

$('search-file').addEventListener('change', (e) => { setQueryFile(e.target.files[0]); e.target.value = ''; });
$('search-form').addEventListener('submit', (e) => { e.preventDefault(); runSearch(); });
// a word alone searches too: the button works as soon as there is one
$('search-label').addEventListener('input', () => {
  $('search-go').disabled = !search.file && !search.similar && !$('search-label').value.trim();
  setFieldError('search-label', '');
});
// Enter searches, Shift+Enter is a new line
$('search-filter').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); runSearch(); }
});

for (const btn of document.querySelectorAll('[data-example]')) {
  btn.addEventListener('click', () => {
    const el = $(btn.dataset.example);
    el.value = '{"animal": {"$in": ["dog", "cat"]}}';
    el.dispatchEvent(new Event('input'));
    el.focus();
  });
}

// ---- Upload ----

const upload = { entries: [], running: false, dataText: '', batch: [] };
const checkUploadData = jsonField('upload-data');

function isImageFile(f) {
  return !f.name.startsWith('.') && (f.type.startsWith('image/') || /\.(jpe?g|png|webp|gif|tiff?|heic|heif|avif)$/i.test(f.name));
}

// Files from a folder are filtered to images; files picked one by one all go (the server says why it refuses one).
function addFiles(files, fromFolder = false) {
  let skipped = 0;
  for (const file of files) {
    if (fromFolder && !isImageFile(file)) { skipped++; continue; }
    const bar = h('progress', { max: 1, value: 0, 'aria-label': `Progress of ${file.name}` });
    const state = h('span', { className: 'state' }, 'queued');
    const li = h('li', { className: 'queued', dataset: { name: file.name } },
      h('span', { className: 'qname', title: file.webkitRelativePath || file.name }, file.name),
      h('span', { className: 'qsize muted' }, fmtBytes(file.size)), bar, state);
    upload.entries.push({ file, li, bar, state, status: 'queued', loaded: 0 });
    $('upload-queue').append(li);
  }
  if (skipped) toast(`Skipped ${skipped} file${skipped === 1 ? '' : 's'} that are not images.`);
  updateUploadUi();
}

function updateUploadUi() {
  const e = upload.entries;
  const queued = e.filter((x) => x.status === 'queued').length;
  const go = $('upload-go');
  go.disabled = upload.running || !queued;
  go.textContent = queued ? `Upload ${queued} file${queued === 1 ? '' : 's'}` : 'Upload';
  $('upload-clear').disabled = upload.running || !e.length;
  const batch = upload.batch;
  const total = batch.reduce((s, x) => s + x.file.size, 0);
  const loaded = batch.reduce((s, x) => s + (x.status === 'done' || x.status === 'error' ? x.file.size : x.loaded), 0);
  const bar = $('upload-total');
  bar.max = total || 1;
  bar.value = total ? loaded : 0;
  bar.hidden = !batch.length;
  if (!batch.length) return;
  const done = batch.filter((x) => x.status === 'done').length;
  const failed = batch.filter((x) => x.status === 'error').length;
  const msg = `${done} of ${batch.length} uploaded${failed ? `, ${failed} failed` : ''}${upload.running ? '…' : '.'}`;
  setStatus('upload-status', msg, upload.running ? 'busy' : failed ? 'error' : 'ok');
}

async function uploadOne(entry) {
  entry.status = 'uploading';
  entry.li.className = 'uploading';
  entry.state.textContent = 'uploading…';
  try {
    const id = await uploadImage(entry.file, upload.dataText, (loaded, total) => {
      entry.loaded = Math.min(entry.file.size, loaded * entry.file.size / (total || 1));
      entry.bar.value = loaded / (total || 1);
      updateUploadUi();
    });
    entry.status = 'done';
    entry.id = id;
    entry.li.className = 'done';
    entry.li.dataset.id = id;
    entry.bar.value = 1;
    entry.state.replaceChildren(h('a', { href: `#/image/${id}` }, `added #${id}`));
  } catch (e) {
    entry.status = 'error';
    entry.li.className = 'error';
    entry.state.textContent = e instanceof ApiError ? e.detail : String(e);
  }
  updateUploadUi();
}

async function startUpload() {
  const d = checkUploadData();
  if (!d.ok) {
    setStatus('upload-status', 'Fix the metadata first.', 'error');
    $('upload-data').focus();
    return;
  }
  upload.dataText = d.value ? JSON.stringify(d.value) : '';
  upload.batch = upload.entries.filter((x) => x.status === 'queued');
  upload.running = true;
  updateUploadUi();
  // two at a time: the server embeds each image on a worker thread; more only queues there
  const worker = async () => {
    for (let next; (next = upload.entries.find((x) => x.status === 'queued'));) {
      if (!upload.batch.includes(next)) upload.batch.push(next);
      await uploadOne(next);
    }
  };
  await Promise.all([worker(), worker()]);
  upload.running = false;
  updateUploadUi();
  const failed = upload.batch.filter((x) => x.status === 'error').length;
  toast(`Upload finished: ${upload.batch.length - failed} added${failed ? `, ${failed} failed` : ''}.`, failed ? 'error' : 'ok');
  refreshSummary();
  browse.stale = true;
}

$('upload-files').addEventListener('change', (e) => { addFiles([...e.target.files]); e.target.value = ''; });
$('upload-folder').addEventListener('change', (e) => { addFiles([...e.target.files], true); e.target.value = ''; });
$('upload-go').addEventListener('click', startUpload);
$('upload-clear').addEventListener('click', () => {
  upload.entries = [];
  upload.batch = [];
  $('upload-queue').replaceChildren();
  setStatus('upload-status', '');
  updateUploadUi();
});

// A dropped folder arrives as a directory entry: walk it (readEntries gives at most 100 at a time).
async function walkEntry(entry, out) {
  if (entry.isFile) {
    out.push(await new Promise((resolve, reject) => entry.file(resolve, reject)));
  } else if (entry.isDirectory) {
    const reader = entry.createReader();
    for (;;) {
      const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
      if (!batch.length) break;
      for (const child of batch) await walkEntry(child, out);
    }
  }
}

// {files, folder}: the dropped files, folders expanded. Entries must be taken before any await.
async function droppedFiles(dt) {
  const entries = [], files = [];
  for (const item of dt.items || []) {
    if (item.kind !== 'file') continue;
    const entry = item.webkitGetAsEntry ? item.webkitGetAsEntry() : null;
    if (entry) entries.push(entry);
    else { const f = item.getAsFile(); if (f) files.push(f); }
  }
  if (!entries.length && !files.length) files.push(...(dt.files || []));
  const folder = entries.some((e) => e.isDirectory);
  for (const entry of entries) {
    try { await walkEntry(entry, files); } catch { /* unreadable entry: skip it */ }
  }
  return { files, folder };
}

// Dropping anywhere on the page acts on the current tab (and never navigates away to the file).
let dragDepth = 0;
const dropZone = () => (currentTab === 'upload' ? $('upload-drop') : $('search-drop'));
document.addEventListener('dragenter', (e) => {
  if (![...(e.dataTransfer?.types || [])].includes('Files')) return;
  dragDepth++;
  dropZone().classList.add('dragging');
});
document.addEventListener('dragleave', () => {
  if (--dragDepth <= 0) { dragDepth = 0; $('upload-drop').classList.remove('dragging'); $('search-drop').classList.remove('dragging'); }
});
document.addEventListener('dragover', (e) => { e.preventDefault(); });
document.addEventListener('drop', async (e) => {
  e.preventDefault();
  dragDepth = 0;
  $('upload-drop').classList.remove('dragging');
  $('search-drop').classList.remove('dragging');
  if (!e.dataTransfer) return;
  const { files, folder } = await droppedFiles(e.dataTransfer);
  if (!files.length) return;
  if (currentTab === 'upload') addFiles(files, folder);
  else {
    if (currentTab !== 'search') location.hash = '#/search';
    setQueryFile(files.find(isImageFile) || files[0]);
  }
});

// Pasting an image: the query on Search, one more file on Upload.
document.addEventListener('paste', (e) => {
  const files = [...(e.clipboardData?.files || [])].filter((f) => f.type.startsWith('image/'));
  if (!files.length) return;
  e.preventDefault();
  if (currentTab === 'upload') addFiles(files);
  else {
    if (currentTab !== 'search') location.hash = '#/search';
    setQueryFile(files[0]);
  }
});

// ---- Browse ----

const browse = { offset: 0, limit: 24, filter: '', total: 0, stale: true, seq: 0, next: null };
const checkBrowseFilter = jsonField('browse-filter');

async function loadBrowse() {
  const f = checkBrowseFilter();
  if (!f.ok) {
    setStatus('browse-status', 'Fix the filter first.', 'error');
    return;
  }
  browse.filter = f.value ? JSON.stringify(f.value) : '';
  browse.limit = parseInt($('browse-size').value, 10);
  browse.stale = false;
  const seq = ++browse.seq;
  setStatus('browse-status', 'Loading…', 'busy');
  try {
    const body = await api('GET', `/images${qs({ offset: browse.offset, limit: browse.limit, query: browse.filter })}`);
    if (seq !== browse.seq) return;
    if (!body.result.length && body.total && browse.offset) { // the page emptied (deletes): go back one
      browse.offset = Math.max(0, browse.offset - browse.limit);
      return loadBrowse();
    }
    browse.total = body.total;
    // a page may end before `limit` rows when they are large; the server says where the next starts
    browse.next = body.next_offset ?? browse.offset + body.result.length;
    const grid = $('browse-grid');
    grid.replaceChildren(...body.result.map(galleryCard));
    if (!body.result.length) {
      grid.append(h('li', { className: 'empty muted' }, browse.filter ? 'No image matches this filter.' : 'No images yet. ',
        browse.filter ? '' : h('a', { href: '#/upload' }, 'Upload some.')));
    }
    const first = body.result.length ? browse.offset + 1 : 0;
    const last = browse.offset + body.result.length;
    $('browse-page').textContent = `${first}–${last} of ${body.total}`;
    $('browse-prev').disabled = browse.offset === 0;
    $('browse-next').disabled = last >= body.total;
    setStatus('browse-status', `${body.total} image${body.total === 1 ? '' : 's'}${browse.filter ? ' match' : ''}.`, 'ok');
  } catch (e) {
    if (seq !== browse.seq) return;
    $('browse-grid').replaceChildren();
    showError(e, 'browse-filter', 'browse-status');
  }
}

$('browse-form').addEventListener('submit', (e) => { e.preventDefault(); browse.offset = 0; loadBrowse(); });
$('browse-size').addEventListener('change', () => { browse.offset = 0; loadBrowse(); });
$('browse-prev').addEventListener('click', () => { browse.offset = Math.max(0, browse.offset - browse.limit); loadBrowse(); });
$('browse-next').addEventListener('click', () => { browse.offset = browse.next ?? browse.offset + browse.limit; loadBrowse(); });

// ---- Index ----

async function loadIndex() {
  try {
    const [{ count, status }, health] = await Promise.all([imageCount(), api('GET', '/index/health')]);
    $('index-count').textContent = String(count);
    // kind and sequence only come from /index/status; without it their cards are hidden
    $('index-kind').textContent = status?.kind || '';
    $('index-seq').textContent = status && status.seq !== undefined ? String(status.seq) : '';
    $('index-kind').parentElement.hidden = !status?.kind;
    $('index-kind-note').textContent = kindNote(status);
    $('index-seq').parentElement.hidden = !(status && status.seq !== undefined);
    $('index-embedding').textContent = status?.embedding || '';
    $('index-embedding').parentElement.hidden = !status?.embedding;
    $('index-embedding-note').textContent = status?.dims ? `${status.dims} numbers per image` : '';
    // a data directory of an older embedding is served as it is until `imgsearch reembed`
    const hint = $('index-reembed');
    hint.hidden = !status?.reembed_to;
    hint.textContent = status?.reembed_to
      ? `The stored vectors are of ${status.embedding} and searches use them as they are. ` +
        `To move them to ${status.reembed_to} (closer matches, see the README), run “imgsearch reembed DATA_DIR”: ` +
        'it may run while the server serves; then stop the server and run it again to swap them in.'
      : '';
    showHealth(health);
    if (status?.reindex?.running && !reindexing) watchReindex(); // started elsewhere
  } catch (e) {
    setStatus('index-status', e instanceof ApiError ? e.detail : String(e), 'error');
  }
}

// "HNSW above 10000 images" / "m 16, ef 64, int8, 12.3 MB": whatever /index/status tells
function kindNote(s) {
  if (!s) return '';
  const parts = [];
  if (s.kind === 'exact' && s.threshold) parts.push(`HNSW above ${s.threshold} images`);
  if (s.kind === 'hnsw' && s.hnsw) parts.push(`m ${s.hnsw.m}, ef ${s.hnsw.ef_search}, ${s.hnsw.storage}`);
  if (s.hnsw && s.hnsw.memory_bytes) parts.push(fmtBytes(s.hnsw.memory_bytes));
  return parts.join(' · ');
}

function showHealth(health) {
  const dd = $('index-health');
  dd.textContent = health.result ? 'healthy' : 'unhealthy';
  dd.className = health.result ? 'good' : 'bad';
  $('index-health-msg').textContent = health.message || '';
  refreshSummary();
}

let reindexing = false;

// Progress while a reindex runs: done/total from /index/status when the server has it, else elapsed time.
function watchReindex(t0 = performance.now()) {
  const bar = $('reindex-progress');
  bar.hidden = false;
  bar.removeAttribute('value'); // indeterminate until we know more
  let stop = false;
  const tick = async () => {
    if (stop) return;
    let text = `Rebuilding… ${fmtSecs(performance.now() - t0)}`;
    const s = statusEndpoint === false ? null : await indexStatus();
    const r = s?.reindex;
    if (r && r.running && r.total > 0) {
      bar.max = r.total;
      bar.value = r.done;
      text = `Rebuilding… ${r.done} of ${r.total} (${fmtSecs(performance.now() - t0)})`;
    } else if (s && r && !r.running && !reindexing) {
      stop = true;
      bar.hidden = true;
      loadIndex();
      return;
    }
    if (!stop) {
      setStatus('index-status', text, 'busy');
      setTimeout(tick, 250);
    }
  };
  tick();
  return () => { stop = true; bar.hidden = true; };
}

async function reindex() {
  const btn = $('reindex-go');
  btn.disabled = true;
  reindexing = true;
  const t0 = performance.now();
  const unwatch = watchReindex(t0);
  try {
    const r = await api('GET', '/index/reindex');
    unwatch();
    setStatus('index-status', `${r.message || 'Reindex finished'} in ${fmtTook(performance.now() - t0)}.`, 'ok');
    toast('Index rebuilt.', 'ok');
  } catch (e) {
    unwatch();
    setStatus('index-status', `Reindex failed: ${e instanceof ApiError ? e.detail : e}`, 'error');
  } finally {
    reindexing = false;
    btn.disabled = false;
  }
  const msg = $('index-status').textContent, cls = $('index-status').className;
  await loadIndex();
  $('index-status').textContent = msg;
  $('index-status').className = cls;
}

$('reindex-go').addEventListener('click', reindex);
$('health-go').addEventListener('click', async () => {
  try {
    showHealth(await api('GET', '/index/health'));
    setStatus('index-status', 'Health checked.', 'ok');
  } catch (e) {
    setStatus('index-status', e instanceof ApiError ? e.detail : String(e), 'error');
  }
});

// ---- Detail dialog (route #/image/ID) ----

const detail = { id: 0, name: '', saved: '', seq: 0 };
const DISPLAYABLE = ['image/jpeg', 'image/png', 'image/webp', 'image/gif'];

const checkDetailData = jsonField('detail-data', (r) => {
  $('detail-save').disabled = !r.ok || !r.value || $('detail-data').value === detail.saved;
});

function fact(k, v) { return h('div', {}, h('dt', {}, k), h('dd', {}, v)); }

async function openDetail(id) {
  const dlg = $('detail');
  const seq = ++detail.seq;
  detail.id = id;
  if (!dlg.open) dlg.showModal();
  $('detail-title').textContent = `Image #${id}`;
  $('detail-img').removeAttribute('src');
  $('detail-img').alt = '';
  $('detail-caption').textContent = 'Loading…';
  $('detail-original').hidden = true;
  $('detail-facts').replaceChildren();
  $('detail-data').value = '';
  setFieldError('detail-data', '');
  $('detail-save').disabled = true;
  $('detail-neighbours').replaceChildren();
  setStatus('detail-status', '');
  for (const b of ['detail-similar', 'detail-delete']) $(b).disabled = true;
  let row;
  try {
    row = (await api('GET', `/data/${id}`)).result;
  } catch (e) {
    if (seq !== detail.seq) return;
    $('detail-caption').textContent = '';
    setStatus('detail-status', e instanceof ApiError && e.status === 404 ? `Image #${id} does not exist (deleted?).` : String(e.detail || e), 'error');
    return;
  }
  if (seq !== detail.seq) return;
  detail.name = row.name;
  $('detail-title').textContent = row.name;
  const img = $('detail-img');
  img.src = DISPLAYABLE.includes(row.content_type) ? imageUrl(id) : thumbUrl(id, 1024);
  img.alt = row.name;
  img.width = row.width;
  img.height = row.height;
  $('detail-original').href = imageUrl(id);
  $('detail-original').hidden = false;
  $('detail-caption').textContent = '';
  $('detail-facts').replaceChildren(
    fact('ID', `#${row.id}`), fact('Type', row.content_type), fact('Size', `${row.width} × ${row.height}`),
    fact('File', fmtBytes(row.size)), fact('Added', new Date(row.created_at).toLocaleString()),
    fact('Shows', row.labels && row.labels.length
      ? row.labels.map((l) => `${l.name} ${Math.round(l.prob * 100)} %`).join(', ')
      : row.labels ? 'nothing the network is sure of' : 'not labelled yet (reindex labels it)'));
  detail.saved = JSON.stringify(row.data || {}, null, 2);
  $('detail-data').value = detail.saved;
  for (const b of ['detail-similar', 'detail-delete']) $(b).disabled = false;
  loadNeighbours(id, seq);
}

async function loadNeighbours(id, seq) {
  const list = $('detail-neighbours');
  list.replaceChildren(h('li', { className: 'muted empty' }, 'Loading…'));
  try {
    const hits = (await api('GET', `/image/${id}/similar?k=8`)).result;
    if (seq !== detail.seq) return;
    list.replaceChildren(...hits.map((hit) => h('li', { className: 'card mini', dataset: { id: hit.id, name: hit.name } },
      thumbLink(hit.id, hit.name, 192), simBar(hit.dist), h('p', { className: 'name', title: hit.name }, hit.name))));
    if (!hits.length) list.append(h('li', { className: 'muted empty' }, 'No other images yet.'));
  } catch (e) {
    if (seq === detail.seq) list.replaceChildren(h('li', { className: 'muted empty' }, `Neighbours unavailable: ${e.detail || e}`));
  }
}

$('detail-save').addEventListener('click', async () => {
  const r = checkDetailData();
  if (!r.ok || !r.value) return;
  const id = detail.id;
  $('detail-save').disabled = true;
  setStatus('detail-status', 'Saving…', 'busy');
  try {
    await api('POST', `/data/${id}`, { image_data: r.value });
    detail.saved = JSON.stringify(r.value, null, 2);
    $('detail-data').value = detail.saved;
    setStatus('detail-status', 'Metadata saved.', 'ok');
    for (const hit of search.hits) if (hit.id === id) hit.data = r.value;
    renderHits();
    browse.stale = true;
  } catch (e) {
    setStatus('detail-status', `Not saved: ${e instanceof ApiError ? e.detail : e}`, 'error');
    $('detail-save').disabled = false;
  }
});

$('detail-similar').addEventListener('click', () => {
  const { id, name } = detail;
  $('detail').close();
  similarTo(id, name);
});

function confirmDialog(text) {
  const dlg = $('confirm');
  $('confirm-text').textContent = text;
  dlg.returnValue = '';
  dlg.showModal();
  $('confirm-cancel').focus();
  return new Promise((resolve) => dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true }));
}

$('detail-delete').addEventListener('click', async () => {
  const { id, name } = detail;
  if (!(await confirmDialog(`Delete “${name}” (#${id})? The image and its metadata are removed for good.`))) return;
  try {
    await api('DELETE', `/image/${id}`);
  } catch (e) {
    setStatus('detail-status', `Not deleted: ${e instanceof ApiError ? e.detail : e}`, 'error');
    return;
  }
  $('detail').close();
  toast(`Deleted ${name} (#${id}).`, 'ok');
  search.hits = search.hits.filter((x) => x.id !== id);
  renderHits();
  if (search.similar && search.similar.id === id) setStatus('search-status', `#${id} was deleted; these results were for it.`);
  browse.stale = true;
  if (currentTab === 'browse') loadBrowse();
  refreshSummary();
});

$('detail-close').addEventListener('click', () => $('detail').close());
$('detail').addEventListener('close', () => {
  detail.seq++;
  if (/^#\/image\//.test(location.hash)) history.replaceState(null, '', `#/${currentTab}`);
});

// ---- Duplicates: groups of the same picture, side by side, to choose which copies to delete ----

const dups = { offset: 0, next: null, seq: 0, groups: [] };

function dupMember(m, first) {
  const box = h('input', { type: 'checkbox', className: 'dup-pick', dataset: { id: m.id, name: m.name },
    'aria-label': `Delete ${m.name} (#${m.id})`, onchange: updateDupDelete });
  const how = first ? 'first of the group' : m.identical ? 'identical file' : `distance ${m.dist.toFixed(3)}`;
  return h('li', { className: 'card dup-member', dataset: { id: m.id } },
    thumbLink(m.id, m.name, 256),
    h('div', { className: 'card-body' },
      h('p', { className: 'name', title: m.name }, m.name, h('span', { className: 'muted id' }, ` #${m.id}`)),
      h('p', { className: 'muted facts' }, `${m.width} × ${m.height} · ${fmtBytes(m.size)} · ${how}`),
      h('label', { className: 'pick' }, box, ' delete')));
}

function renderDupGroups() {
  $('dup-groups').replaceChildren(...dups.groups.map((g, i) =>
    h('li', { className: 'dup-group' },
      h('h2', {}, `Group ${i + 1}: ${g.size} images${g.exact ? ', identical files' : ''}`),
      h('ol', { className: 'grid dup-members' }, ...g.members.map((m, j) => dupMember(m, j === 0))))));
  $('dup-more').hidden = dups.next === null;
  updateDupDelete();
}

function updateDupDelete() {
  const n = document.querySelectorAll('#dup-groups .dup-pick:checked').length;
  $('dup-delete').disabled = n === 0;
  $('dup-delete').textContent = n ? `Delete ${n} selected` : 'Delete selected';
}

async function loadDuplicates(more = false) {
  const seq = ++dups.seq;
  if (!more) { dups.groups = []; dups.offset = 0; }
  setStatus('dup-status', 'Looking for duplicates…', 'busy');
  const t0 = performance.now();
  try {
    const body = await api('GET', `/duplicates${qs({ max_dist: $('dup-level').value, offset: more ? dups.next : 0, limit: 20 })}`);
    if (seq !== dups.seq) return;
    dups.groups = dups.groups.concat(body.result);
    dups.next = body.next_offset;
    renderDupGroups();
    const copies = body.result.reduce((a, g) => a + g.size - 1, 0);
    setStatus('dup-status', body.total
      ? `${body.total} group${body.total === 1 ? '' : 's'} among ${body.images} images${more ? '' : ` (${copies} copies on this page)`} in ${fmtTook(performance.now() - t0)}.`
      : `No duplicates among ${body.images} images.`, 'ok');
  } catch (e) {
    if (seq === dups.seq) showError(e, null, 'dup-status');
  }
}

$('dup-form').addEventListener('submit', (e) => { e.preventDefault(); loadDuplicates(); });
$('dup-level').addEventListener('change', () => loadDuplicates());
$('dup-more').addEventListener('click', () => loadDuplicates(true));
$('dup-keep-first').addEventListener('click', () => {
  for (const g of document.querySelectorAll('#dup-groups .dup-members')) {
    g.querySelectorAll('.dup-pick').forEach((box, i) => { box.checked = i > 0; });
  }
  updateDupDelete();
});
$('dup-delete').addEventListener('click', async () => {
  const picked = [...document.querySelectorAll('#dup-groups .dup-pick:checked')].map((b) => ({ id: +b.dataset.id, name: b.dataset.name }));
  if (!picked.length) return;
  if (!(await confirmDialog(`Delete ${picked.length} image${picked.length === 1 ? '' : 's'}? They and their metadata are removed for good.`))) return;
  let failed = 0;
  for (const p of picked) {
    try { await api('DELETE', `/image/${p.id}`); } catch (e) { if (!(e instanceof ApiError && e.status === 404)) failed++; }
  }
  toast(failed ? `Deleted ${picked.length - failed}; ${failed} could not be deleted.` : `Deleted ${picked.length} image${picked.length === 1 ? '' : 's'}.`, failed ? 'error' : 'ok');
  browse.stale = true;
  refreshSummary();
  loadDuplicates();
});

// ---- routing: #/search #/upload #/browse #/duplicates #/index, #/image/ID over the current tab ----

const TABS = ['search', 'upload', 'browse', 'duplicates', 'index'];
let currentTab = 'search';

function showTab(tab, focus) {
  currentTab = tab;
  for (const t of TABS) $(`view-${t}`).hidden = t !== tab;
  for (const a of document.querySelectorAll('nav a[data-tab]')) {
    if (a.dataset.tab === tab) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${tab[0].toUpperCase()}${tab.slice(1)} · imgsearch`;
  if (tab === 'browse' && browse.stale) loadBrowse();
  if (tab === 'index') loadIndex();
  if (tab === 'duplicates') loadDuplicates();
  if (focus) $(`h-${tab}`).focus({ preventScroll: true });
}

function route(focus) {
  const m = /^#\/image\/(\d+)$/.exec(location.hash);
  if (m) {
    if ($(`view-${currentTab}`).hidden) showTab(currentTab);
    openDetail(Number(m[1]));
    return;
  }
  const tab = TABS.find((t) => location.hash === `#/${t}`) || 'search';
  if ($('detail').open) $('detail').close();
  showTab(tab, focus);
}

// ---- API key ----
// The first 401 opens the key dialog (once per page: the page reloads with the key). A stored
// key that the server refuses (revoked) is shown as the reason.
function askForKey(why) {
  const dlg = $('key-dialog');
  if (dlg.open) return;
  $('key-why').hidden = !storedKey();
  $('key-why').textContent = storedKey() ? `The key this browser keeps was refused: ${why}` : '';
  $('key-input').value = '';
  dlg.showModal();
}
window.addEventListener('imgsearch:key-needed', (e) => askForKey(e.detail));
$('key-dialog').addEventListener('close', () => {
  const key = $('key-input').value.trim();
  if ($('key-dialog').returnValue !== 'ok' || !key) return;
  rememberKey(key);
  location.reload();
});
$('key-forget').hidden = !storedKey();
$('key-forget').addEventListener('click', () => {
  forgetKey();
  location.reload();
});

for (const t of TABS) $(`h-${t}`).tabIndex = -1; // focus target after navigation
window.addEventListener('hashchange', () => route(true));
route(false);
refreshSummary();
