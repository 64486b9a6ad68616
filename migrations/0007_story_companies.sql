-- One row per (story, active tracked company it mentions), so that SQL users can filter flagged
-- stories by an exact company name. `flagged_stories.companies` is a comma-separated list for
-- reading; `companies LIKE '%Meta%'` also picks stories that only mention "Metaplanet".
-- CROSS JOIN keeps companies as the outer loop: a filter on one company then reads only its
-- mentions (through mentions_by_company), not every mention in the database.
CREATE VIEW story_companies AS
SELECT DISTINCT e.story_id AS story_id,
                c.name     AS company,
                c.ticker   AS ticker
FROM companies c
CROSS JOIN mentions m ON m.company_id = c.id
CROSS JOIN entries e ON e.id = m.entry_id
WHERE c.active = 1;
