// The public HTTP API, as the UI uses it. Every call goes to this server; errors carry the
// server's {"detail": ...} text and HTTP status.

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

// The API key, when the server needs one: kept in this browser's storage and sent with every
// request (X-API-Key); also as a cookie, so that <img> loads (thumbnails, originals) carry it.
// SameSite=Strict: no other site's page makes this browser send it.
const KEY_ITEM = 'imgsearch.apiKey';
const KEY_COOKIE = 'imgsearch_key';

export function storedKey() {
  try { return localStorage.getItem(KEY_ITEM) || ''; } catch { return ''; }
}

function keyCookie(value, maxAge) {
  const secure = location.protocol === 'https:' ? '; Secure' : '';
  document.cookie = `${KEY_COOKIE}=${encodeURIComponent(value)}; Path=/; SameSite=Strict; Max-Age=${maxAge}${secure}`;
}

export function rememberKey(key) {
  localStorage.setItem(KEY_ITEM, key);
  keyCookie(key, 400 * 86400);
}

export function forgetKey() {
  try { localStorage.removeItem(KEY_ITEM); } catch { /* storage off */ }
  keyCookie('', 0);
}

// A stored key is sent on every request; renew its cookie (it may have expired or been cleared).
if (storedKey() && !document.cookie.split('; ').some((c) => c.startsWith(`${KEY_COOKIE}=`))) keyCookie(storedKey(), 400 * 86400);

// 401: the UI asks for a key (app.js listens); 401 and 403 read as words.
function accessProblem(status, detail) {
  if (status === 401) {
    window.dispatchEvent(new CustomEvent('imgsearch:key-needed', { detail }));
    return `This server needs a valid API key: ${detail}`;
  }
  if (status === 403) return `Your API key may not do this: ${detail}`;
  return detail;
}

async function detailOf(res) {
  try {
    const body = await res.json();
    if (body && typeof body.detail === 'string') return body.detail;
  } catch { /* not JSON */ }
  return `${res.status} ${res.statusText || 'error'}`;
}

// GET/POST/DELETE path; body: FormData, a string, or an object sent as JSON. Resolves to the JSON body.
export async function api(method, path, body) {
  const init = { method, headers: {} };
  if (storedKey()) init.headers['X-API-Key'] = storedKey();
  if (body instanceof FormData || typeof body === 'string') init.body = body;
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'the server cannot be reached');
  }
  if (!res.ok) throw new ApiError(res.status, accessProblem(res.status, await detailOf(res)));
  return res.json();
}

// A query string from an object, leaving out empty values.
export function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') p.set(k, v);
  const s = p.toString();
  return s ? `?${s}` : '';
}

export const thumbUrl = (id, size = 320) => `/image/${id}/thumbnail?size=${size}&format=webp`;
export const imageUrl = (id) => `/image/${id}`;

// POST /image/add with upload progress (fetch has none): onProgress(loadedBytes, totalBytes).
// Resolves to the new id; rejects with an ApiError.
export function uploadImage(file, dataText, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    form.append('image', file, file.name);
    if (dataText) form.append('data', dataText);
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/image/add');
    if (storedKey()) xhr.setRequestHeader('X-API-Key', storedKey());
    xhr.responseType = 'json';
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded, e.total); };
    xhr.onload = () => {
      const body = xhr.response;
      if (xhr.status === 201 && body && Number.isInteger(body.result)) resolve(body.result);
      else reject(new ApiError(xhr.status, accessProblem(xhr.status, (body && body.detail) || `${xhr.status} ${xhr.statusText}`)));
    };
    xhr.onerror = () => reject(new ApiError(0, 'the server cannot be reached'));
    xhr.send(form);
  });
}
