// The public HTTP API, as the UI uses it. Every call goes to this server; errors carry the
// server's {"detail": ...} text and HTTP status.

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
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
  if (!res.ok) throw new ApiError(res.status, await detailOf(res));
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
    xhr.responseType = 'json';
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded, e.total); };
    xhr.onload = () => {
      const body = xhr.response;
      if (xhr.status === 201 && body && Number.isInteger(body.result)) resolve(body.result);
      else reject(new ApiError(xhr.status, (body && body.detail) || `${xhr.status} ${xhr.statusText}`));
    };
    xhr.onerror = () => reject(new ApiError(0, 'the server cannot be reached'));
    xhr.send(form);
  });
}
