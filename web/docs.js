// Renders the OpenAPI document this server serves; no external assets.
const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined) e.textContent = text; return e; };
fetch('/openapi.json').then(r => r.json()).then(spec => {
  document.getElementById('intro').textContent = spec.info.description;
  const ops = document.getElementById('ops');
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const box = el('section', 'op');
      const head = el('h2');
      head.append(el('span', 'method ' + method, method), el('code', '', path));
      box.append(head, el('p', '', op.summary || ''));
      if (op.parameters && op.parameters.length) {
        const t = el('table');
        t.append(Object.assign(el('tr'), { innerHTML: '<th>parameter</th><th>in</th><th>schema</th>' }));
        for (const p of op.parameters) {
          const tr = el('tr');
          tr.append(el('td', '', p.name + (p.required ? ' *' : '')), el('td', '', p.in), el('td', '', JSON.stringify(p.schema) + (p.description ? ' — ' + p.description : '')));
          t.append(tr);
        }
        box.append(t);
      }
      if (op.requestBody) box.append(el('p', 'muted', 'body: ' + Object.keys(op.requestBody.content).join(', ')));
      if (op.description) box.append(el('p', '', op.description));
      // shared answers (401, 403, 429) are references into components.responses
      const resolve = (r) => (r.$ref ? spec.components.responses[r.$ref.split('/').pop()] : r);
      const codes = Object.entries(op.responses).map(([c, r]) => c + ' ' + resolve(r).description).join(' · ');
      box.append(el('p', 'muted', 'responses: ' + codes));
      ops.append(box);
    }
  }
}).catch(e => { document.getElementById('intro').textContent = 'Cannot load /openapi.json: ' + e; });
