"""`import mysql.connector as mysql` for the book's listing: PyMySQL's connect under the name the book uses."""

from pymysql import connect  # noqa: F401
