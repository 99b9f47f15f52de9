// Rows a test owns: a fresh agency with one or more sites and a member user, created with direct
// SQL, so that tests that write never touch seeded rows or each other's rows. `drop()` deletes the
// agency; ON DELETE CASCADE removes its sites and every mod_chat_* row of them.

import { randomUUID, sql, uniq } from './env.mjs';

/**
 * Creates agency + `sites` sites + one agency member (role owner). Returns
 * { agencyId, siteIds, siteId (the first), userId, tag, drop() }.
 */
export async function createTenant({ sites = 1, label = 'interop' } = {}) {
  const tag = uniq();
  const agencyId = randomUUID();
  const userId = randomUUID();
  await sql('insert into public.agencies (id, name) values ($1, $2)', [agencyId, `${label} ${tag}`]);
  await sql(
    "insert into public.agency_members (agency_id, user_id, role) values ($1, $2, 'owner')",
    [agencyId, userId],
  );
  const siteIds = [];
  for (let i = 0; i < sites; i++) {
    const id = randomUUID();
    await sql('insert into public.sites (id, agency_id, name) values ($1, $2, $3)', [
      id,
      agencyId,
      `${label} ${tag} site ${i + 1}`,
    ]);
    siteIds.push(id);
  }
  return {
    agencyId,
    siteIds,
    siteId: siteIds[0],
    userId,
    tag,
    drop: () => sql('delete from public.agencies where id = $1', [agencyId]),
  };
}

/** Inserts a visitor (direct SQL) and returns its id. */
export async function insertVisitor(siteId, fields = {}) {
  return insertRow('mod_chat_visitors', { site_id: siteId, ...fields });
}

/** Inserts a conversation (direct SQL) and returns its id. */
export async function insertConversation(siteId, visitorId, fields = {}) {
  return insertRow('mod_chat_conversations', { site_id: siteId, visitor_id: visitorId, ...fields });
}

/** Inserts one row of `table` from a plain object (direct SQL, superuser); returns its id. */
export async function insertRow(table, fields) {
  const cols = Object.keys(fields);
  const vals = cols.map((c) => {
    const v = fields[c];
    return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Date)
      ? JSON.stringify(v)
      : v;
  });
  const rows = await sql(
    `insert into public.${table} (${cols.map((c) => `"${c}"`).join(', ')})
     values (${cols.map((_, i) => `$${i + 1}`).join(', ')}) returning id`,
    vals,
  );
  return rows[0].id;
}
