-- Filing a report looks for a likely duplicate: an open report at the same
-- site in the same category. Submissions the reports read model has not
-- folded yet are read from the log's tail; without this index that read
-- scanned every event of the tail (hundreds under load, each payload
-- unpacked and matched) on every filing. With it, it reads the tail's
-- submissions at that one site.
CREATE INDEX events_report_submissions_by_site
    ON events (community_id, (payload #>> '{ReportSubmitted,place,site,site}'), position)
    WHERE event_type = 'ReportSubmitted';
