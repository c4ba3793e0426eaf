"""Calendar providers behind one protocol (`base.CalendarProvider`)."""
