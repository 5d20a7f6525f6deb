# Django's Arabic locale defines no DATETIME_FORMAT (it would fall back to the English order);
# one Arabic date-time format for every page.
DATETIME_FORMAT = "j F Y، g:i A"
SHORT_DATETIME_FORMAT = DATETIME_FORMAT
