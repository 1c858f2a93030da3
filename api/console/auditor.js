// auditor.js: the tenant export an auditor takes away (audit.export),
// downloaded part by part, with the command that verifies it offline. The
// auditor's timeline is tenant.js's history shown by day.

import { call } from './api.js';
import { t } from './i18n.js';
import { act, button, download, el, fill, hexBytes, say } from './ui.js';

export async function auditExport(main) {
  const cmd = el('pre', { id: 'verify-command' });
  const next = el('div', { class: 'row' });
  const setCommand = (file) => {
    cmd.textContent = `kiroku audit verify ${file} --pubkey '<journal-1 public key>'`;
  };
  const take = (from) =>
    act(async () => {
      const r = await call('audit.export', { from_seq: from });
      const file = `tenant-export-${from}.json`;
      download(file, hexBytes(r.export || ''), 'application/json');
      setCommand(file);
      say(t('aud.done', file), 'ok');
      fill(next, r.next_from ? button(t('aud.next', r.next_from), () => take(r.next_from)) : null);
    });
  setCommand('tenant-export-1.json');
  fill(
    main,
    el('h1', {}, t('aud.title')),
    el('p', {}, t('aud.explain')),
    cmd,
    el('div', { class: 'row' }, button(t('aud.run'), () => take(1), { class: 'primary', id: 'audit-export-run' })),
    next,
  );
}
