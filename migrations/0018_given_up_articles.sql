-- Article pages given up (state 'failed'), found without reading the whole `articles` table,
-- whose rows carry each page's text: `feedhound feeds` counts them per feed and /metrics
-- exports their number at every scrape. Few pages fail, so the index stays small.
CREATE INDEX articles_given_up ON articles (entry_id) WHERE state = 'failed';
