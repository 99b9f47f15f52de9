// Fixed ids of supabase/seed.sql (see the id scheme at the top of that file). Tests read seeded
// rows but never change them; whatever they mutate they create themselves (lib/fixtures.mjs).

export const AGENCY_A = 'a0000000-0000-4000-8000-000000000001'; // Acme Agency
export const AGENCY_B = 'a0000000-0000-4000-8000-000000000002'; // Beta Agency

export const SITE_ACME_STORE = 'b0000000-0000-4000-8000-000000000001'; // agency A
export const SITE_ACME_BLOG = 'b0000000-0000-4000-8000-000000000002'; // agency A
export const SITE_BETA_SHOP = 'b0000000-0000-4000-8000-000000000003'; // agency B

export const USER_ALICE = 'c0000000-0000-4000-8000-000000000001'; // A owner
export const USER_BOB = 'c0000000-0000-4000-8000-000000000002'; // A admin
export const USER_CAROL = 'c0000000-0000-4000-8000-000000000003'; // A member
export const USER_DAVE = 'c0000000-0000-4000-8000-000000000004'; // B owner

export const CONV_STORE_PENDING = '20000000-0000-4000-8000-000000000101'; // unassigned
export const CONV_STORE_ACTIVE = '20000000-0000-4000-8000-000000000102'; // alice
export const CONV_BETA_ACTIVE = '20000000-0000-4000-8000-000000000301'; // dave

export const VISITOR_MIA = '10000000-0000-4000-8000-000000000101'; // Acme Store, mia@example.com

/** Every mod_chat_* table (all have site_id and RLS "site isolation"). */
export const CHAT_TABLES = [
  'mod_chat_departments',
  'mod_chat_agents',
  'mod_chat_widget_settings',
  'mod_chat_visitors',
  'mod_chat_conversations',
  'mod_chat_messages',
  'mod_chat_canned_responses',
  'mod_chat_knowledge_base',
  'mod_chat_analytics',
];
