"""The book's Listing 8-4 imports `mysql.connector` (Connector/Python). Not installed here: this package lends it
PyMySQL's connect(), whose connect(**kw) / cursor() / execute() / fetchall() are the subset the listing uses."""
