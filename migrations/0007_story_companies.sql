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
