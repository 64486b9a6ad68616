-- One row per (story, active tracked company it mentions), so that SQL users can filter flagged
-- stories by an exact company name. `flagged_stories.companies` is a comma-separated list for
-- reading; `companies LIKE '%Meta%'` also picks stories that only mention "Metaplanet".
CREATE VIEW story_companies AS
SELECT DISTINCT e.story_id AS story_id,
                c.name     AS company,
                c.ticker   AS ticker
FROM mentions m
JOIN entries e ON e.id = m.entry_id
JOIN companies c ON c.id = m.company_id AND c.active = 1;

-- Names are compared without case (`company = 'xiaomi' COLLATE NOCASE`, as `feedhound mentions
-- --company` does). With this index a filter on one company reads only its mentions
-- (mentions_by_company), and a filter on one story only its entries (entries_by_story); without
-- it, SQLite read every mention to answer the former.
CREATE INDEX companies_by_folded_name ON companies (name COLLATE NOCASE);
