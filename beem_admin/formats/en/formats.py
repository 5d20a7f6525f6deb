# One date-time format for every page (templates and live updates use ``|when``).
DATETIME_FORMAT = "N j, Y, P"
SHORT_DATETIME_FORMAT = DATETIME_FORMAT
